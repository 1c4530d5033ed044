"""hugetlbfs (mm/hugetlb.c): not modelled yet (the huge-pages issue).

MAP_HUGETLB mmap fails with ENOSYS until then; hugetlb_fault() is the entry the
generic fault path calls for VM_HUGETLB VMAs, which cannot exist yet.
"""


def hugetlb_fault(mm, vma, address, flags):
    raise NotImplementedError("hugetlb_fault: hugetlbfs is not modelled yet")


def __unmap_hugepage_range(tlb, vma, start, end, folio):
    raise NotImplementedError("hugetlb is not modelled yet")
