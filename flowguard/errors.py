"""The exceptions flowguard raises. Library code raises them; only the CLI turns them into exit codes.

    FlowguardError
    ├── ConfigError    a setting has a value outside what it allows
    ├── CaptureError   a capture file or interface cannot be read (missing, not a capture, truncated)
    ├── ModelError     a model directory is missing, tampered with, or built for other features
    │   └── PredictorError  the predictor asked for is unknown or cannot be used
    ├── FirewallError  a firewall adapter cannot drive its firewall
    ├── StoreError     the service's database cannot be opened, is too new, or fails
    └── PublishError   verdicts could not be published to a flowguard service
"""


class FlowguardError(Exception):
    """Base of every error flowguard raises on purpose."""


class ConfigError(FlowguardError):
    """A setting has a value outside what it allows; the message names the setting and the values."""


class CaptureError(FlowguardError):
    """A capture source cannot be read, or can be read only in part."""


class ModelError(FlowguardError):
    """A model cannot be loaded or does not fit this version of flowguard."""


class PredictorError(ModelError):
    """The `predictor` asked of FlowClassifier.load is not one of PREDICTORS, or cannot predict
    (the model cannot be compiled). The message begins with the setting's name."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"predictor: {detail}")
        self.detail = detail


class FirewallError(FlowguardError):
    """A firewall adapter cannot reach or change its firewall."""


class StoreError(FlowguardError):
    """The service's database cannot be opened or used (unreadable, made by a newer flowguard)."""


class PublishError(FlowguardError):
    """`triage --publish` could not deliver verdicts (unreachable, refused, or kept failing)."""
