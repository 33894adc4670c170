"""The data flow, one module a stage: validate → enrich → route (→ detect → publish)."""
