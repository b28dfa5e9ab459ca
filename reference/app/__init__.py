"""Houses and Cats: flasker's reference application (see MODULES in default.cfg)."""
