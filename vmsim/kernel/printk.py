"""The kernel log (kernel/printk/printk.c) and panic() (kernel/panic.c).

printk() appends one record (log level, text) to the machine's log buffer, read back
by ``dmesg`` (Machine.dmesg()). vmsim has no clock, so records carry no timestamp;
pr_cont() pieces are joined by the caller into one record. __ratelimit() follows
DEFAULT_RATELIMIT_BURST (10) per interval; with no clock the interval never ends,
so a rate-limited message is printed its first 10 times.
"""
KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR, KERN_WARNING, KERN_NOTICE, KERN_INFO = range(7)
DEFAULT_RATELIMIT_BURST = 10


class KernelPanic(Exception):
    """panic(): the machine has stopped ("Kernel panic - not syncing: ...")."""


def printk(k, level: int, text: str):
    """printk(): one record in the log buffer (a trailing newline is dropped)."""
    k.log_buf.append((level, text[:-1] if text.endswith("\n") else text))


def pr_err(k, text):
    printk(k, KERN_ERR, text)


def pr_warn(k, text):
    printk(k, KERN_WARNING, text)


def pr_info(k, text):
    printk(k, KERN_INFO, text)


def __ratelimit(k, state: str, burst: int = DEFAULT_RATELIMIT_BURST) -> bool:
    """__ratelimit(): True for the first ``burst`` calls of ``state``."""
    n = k.ratelimit.get(state, 0)
    k.ratelimit[state] = n + 1
    return n < burst


def panic(k, msg: str):
    """panic(): log "Kernel panic - not syncing: msg" and stop the machine."""
    msg = msg.rstrip("\n")
    printk(k, KERN_EMERG, "Kernel panic - not syncing: " + msg)
    k.panicked = msg
    raise KernelPanic(msg)
