"""Registration glue: works from an installed wheel and from an editable install alike,
because it imports the package instead of resolving flow files on COLANGPATH."""

from guard_plugin.nemo import init, register

register()  # the `guard_plugin` engine, before NeMo creates any model

__all__ = ["init"]
