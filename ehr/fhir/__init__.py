"""FHIR R4 adapter (fhirclient models; R4 4.0.1)."""
