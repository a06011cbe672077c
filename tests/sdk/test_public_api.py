"""The SDK's public names: what `medledger.sdk` exports is what applications may rely on."""

from __future__ import annotations

import medledger.sdk as sdk


def test_the_sdk_exports_exactly_its_public_api() -> None:
    # Execute / Assert
    assert sorted(sdk.__all__) == [
        "Credentials",
        "Gateway",
        "LedgerClient",
        "NoQuorumAttestation",
        "NotTheAttestedBlock",
        "PatientWallet",
        "ProofRefused",
        "SubmitTimeout",
        "TransactionFailed",
    ]
    assert all(hasattr(sdk, name) for name in sdk.__all__)
    assert issubclass(sdk.NoQuorumAttestation, sdk.ProofRefused)
    assert issubclass(sdk.NotTheAttestedBlock, sdk.ProofRefused)
