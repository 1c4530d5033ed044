"""Small helpers the examples share: read one VMA's block of /proc/PID/smaps or its
line of /proc/PID/maps, the way a shell user would with grep."""


def smaps(machine, pid, addr):
    """{field: kB} of the smaps block of the VMA containing ``addr``."""
    out, inside = {}, False
    for line in machine.read_file(f"/proc/{pid}/smaps").splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:              # a VMA's header line
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= addr < hi
        elif inside and line.endswith(" kB"):
            name, value = line.split(":")
            out[name] = int(value.split()[0])
    return out


def maps_line(machine, pid, name):
    """(start, end, perms) of the /proc/PID/maps line ending in ``name`` ("[stack]")."""
    for line in machine.read_file(f"/proc/{pid}/maps").splitlines():
        if line.endswith(name):
            rng, perms = line.split()[:2]
            lo, hi = (int(x, 16) for x in rng.split("-"))
            return lo, hi, perms
    return None
