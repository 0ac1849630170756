"""remixnet's runtime: I/O, processes, sockets and disk around the sans-IO ``protocol``."""
