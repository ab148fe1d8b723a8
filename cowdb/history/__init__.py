"""History: commit records, refs (branches, tags), all kept in the catalog tree."""
