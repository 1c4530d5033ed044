"""MMU notifier subscriptions (mm/mmu_notifier.c, include/linux/mmu_notifier.h).

The model calls k.mmu_notifier_invalidate_range_start/end(mm, event, start, end) with
a short event string where 6.18 calls mmu_notifier_invalidate_range_start/end on a
range initialised with an ``enum mmu_notifier_event``; a subscription registered here
receives the kernel's event name. Simplified: no interval notifiers, no
mmu_notifier_range flags (blockable), no clear_young/test_young hooks.
"""
EVENT_NAMES = {
    "unmap": "MMU_NOTIFY_UNMAP",
    "clear": "MMU_NOTIFY_CLEAR",
    "protection_vma": "MMU_NOTIFY_PROTECTION_VMA",
    "protection_page": "MMU_NOTIFY_PROTECTION_PAGE",
    "soft_dirty": "MMU_NOTIFY_SOFT_DIRTY",
    "release": "MMU_NOTIFY_RELEASE",
    "migrate": "MMU_NOTIFY_MIGRATE",
    "exclusive": "MMU_NOTIFY_EXCLUSIVE",
}


class mmu_notifier:
    """struct mmu_notifier with its ops: invalidate_range_start / _end and release."""
    __slots__ = ("start_cb", "end_cb")

    def __init__(self, start_cb, end_cb=None):
        self.start_cb = start_cb
        self.end_cb = end_cb

    def __call__(self, phase, event, start, end):
        name = EVENT_NAMES.get(event, event)
        if phase == "invalidate_range_end":
            if self.end_cb is not None:
                self.end_cb(name, start, end)
        else:                       # invalidate_range_start, or ->release at exit
            self.start_cb(name, start, end)


def mmu_notifier_register(mm, callback, on_end=None):
    """mmu_notifier_register(): hook a subscription on mm; return it."""
    sub = mmu_notifier(callback, on_end)
    mm.mmu_notifiers.append(sub)
    return sub


def mmu_notifier_unregister(mm, sub):
    """mmu_notifier_unregister(): unhook (->release is not called)."""
    if sub in mm.mmu_notifiers:
        mm.mmu_notifiers.remove(sub)
