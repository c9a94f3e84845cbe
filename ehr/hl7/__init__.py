"""HL7 v2 adapter (hl7apy builds messages, python-hl7 frames them over MLLP)."""
