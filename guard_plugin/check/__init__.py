"""One check, from content to decision: the :class:`Guard` facade (:mod:`.guard`), what a
check is made of (:mod:`.plan`), the verdict cache (:mod:`.cache`), the audit events it emits
(:mod:`.events`) and the work it leaves running (:mod:`.background`)."""

from guard_plugin.check.cache import VerdictCache
from guard_plugin.check.guard import Guard, as_guard
from guard_plugin.check.plan import ContentCheck, Plan, Slot

__all__ = ["ContentCheck", "Guard", "Plan", "Slot", "VerdictCache", "as_guard"]
