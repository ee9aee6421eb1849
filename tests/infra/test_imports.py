"""constructs/ merges into the `constructs` library's namespace instead of shadowing it."""

from pathlib import Path


def test_import_library_and_project_constructs_together():
    from constructs import Construct  # the library aws-cdk-lib is built on
    from constructs.secure_bucket import SecureBucket  # our building block

    assert Construct.__module__.startswith("constructs")
    assert issubclass(SecureBucket, Construct)


def test_constructs_folder_has_no_init_file():
    # An __init__.py would turn the folder into a regular package that shadows the library.
    assert not (Path(__file__).resolve().parents[2] / "constructs" / "__init__.py").exists()
