"""Configuration, as kong/conf_loader and kong/db (declarative config, entity and plugin schemas) hold it."""
