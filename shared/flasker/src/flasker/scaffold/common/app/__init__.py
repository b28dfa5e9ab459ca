"""__PROJECT_NAME__: the application package (see MODULES in default.cfg)."""
