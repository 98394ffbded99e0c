"""The operator dashboard (Textual). Its screens arrive with the dashboard issue; the package
exists now so that installs and imports keep one shape from the start."""
