"""The error type of a bad setting: its message is one line naming the field and the value."""


class SettingError(ValueError):
    """An invalid registry entry or configuration value."""
