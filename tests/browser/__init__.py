"""The dashboard in a real browser (issue 17). A package, unlike the other test folders,
because it has a conftest.py of its own: as a plain folder, that conftest would take the
module name `conftest` from tests/conftest.py, which many tests import helpers from."""
