"""Domain facts and settings: territories, nomenclatures, schema, selection, errors, French formats."""
