#!/bin/sh
# Regenerate layout-6.18.txt (raw facts behind docs/linux-layout.md).
# ASLR off via setarch -R, RLIMIT_STACK 8 MiB.
cd "$(dirname "$0")"
gcc -O2 -static -o pause_min pause_min.c
gcc -O2 -Wall -static -o layout_probe layout_probe.c
ulimit -s 8192
{
echo "# uname -r: $(uname -r)   randomize_va_space=$(cat /proc/sys/kernel/randomize_va_space) (setarch -R used)"
echo "# /proc/sys/vm/mmap_min_addr = $(cat /proc/sys/vm/mmap_min_addr)"
echo "# THP enabled: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
echo "## pause_min (int main(){pause();}, -static), /proc/<pid>/maps read from outside"
setarch -R ./pause_min & pid=$!
sleep 0.3
cat /proc/$pid/maps
echo "## pause_min stack smaps block"
sed -n '/\[stack\]/,/VmFlags/p' /proc/$pid/smaps
printf "## pause_min /proc/<pid>/stat: start_brk=0x%x startstack=0x%x\n" $(awk "{print \$47, \$28}" /proc/$pid/stat)
kill $pid; wait $pid 2>/dev/null
echo "## layout_probe startup"
setarch -R ./layout_probe startup
echo "## layout_probe brk"
setarch -R ./layout_probe brk
for seq in "4096" "0x100000 0x200000 0x201000 0x400000 0x300000" "0x100000" "0x200000" "0x201000" \
	   "0x400000" "0x300000" "0x400000 0x400000 0x200000" "4096 0x200000 4096 0x200000"; do
	echo "## fresh process, mmap sequence: $seq"
	setarch -R ./layout_probe mmap $seq | grep '^mmap'
done
echo "## hint handling"
setarch -R ./layout_probe hint
} > layout-6.18.txt 2>&1
echo "wrote layout-6.18.txt"
