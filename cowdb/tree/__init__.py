"""The copy-on-write B+tree: nodes, the tree, cursors."""
