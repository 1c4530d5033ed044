"""The disk filesystem at / and /tmp: ext4 as 6.18 behaves for the page cache
(fs/ext4/file.c, inode.c, readpage.c).

Files get large folios (mapping_set_large_folios: ext4_should_enable_large_folio in
6.18 for regular, non-journalled-data files); mmap uses ext4_file_vm_ops
(filemap_fault, filemap_map_pages, ext4_page_mkwrite) and thp_get_unmapped_area
places mappings of 2 MiB or more on a PMD boundary. ->readahead
(ext4_mpage_readpages) reads the blocks a file has and zero-fills holes without I/O;
->writepages writes the dirty folios' pages back. Block allocation, the journal and
extents are not modelled: a file's blocks are its written pages, by index, in the
inode's block map (inode.i_blocks: page index -> block number) with the contents on
the device (block_device.disk).
"""
from vmsim.fs.blockdev import submit_bio
from vmsim.mm.page_flags import PG_uptodate, PG_locked
from vmsim.mm.filemap import filemap_map_pages

_BLOCKS = {}            # identical block contents share one bytes object


def _intern(b: bytes) -> bytes:
    return _BLOCKS.setdefault(b, b) if len(_BLOCKS) < 4096 else b


def _ext4_get_block(inode, index: int):
    """The contents of the block mapped at page ``index``, or None for a hole."""
    blk = inode.i_blocks.get(index)
    return None if blk is None else inode.i_sb.s_bdev.disk[blk]


def _ext4_set_block(inode, index: int, data: bytes):
    """Write ``data`` to the block at page ``index``, allocating one for a hole
    (ext4_map_blocks(EXT4_GET_BLOCKS_CREATE); a freed block is reused first)."""
    _ext4_set_blocks(inode, index, (data,))


def _ext4_set_blocks(inode, first: int, datas):
    """_ext4_set_block() of each of ``datas`` at pages first, first + 1, ..."""
    bdev = inode.i_sb.s_bdev
    blocks, disk, free = inode.i_blocks, bdev.disk, bdev.free_blocks
    for index, data in enumerate(datas, first):
        blk = blocks.get(index)
        if blk is not None:
            disk[blk] = data
            continue
        if free:
            blk = free.pop()
            disk[blk] = data
        else:
            blk = len(disk)
            disk.append(data)
        blocks[index] = blk


def _ext4_free_blocks(inode, first: int, last: int):
    """Unmap and free the blocks at page indices [first, last] (ext4_ext_remove_space
    -> ext4_free_blocks)."""
    blocks = inode.i_blocks
    if not blocks:
        return
    freed = [blk for _, blk in blocks.items_in(first, last)]
    if freed:
        blocks.erase_range(first, last)
        bdev = inode.i_sb.s_bdev
        disk = bdev.disk
        for blk in freed:
            disk[blk] = None
        bdev.free_blocks += freed


def _folio_pages(k, folio):
    from vmsim.mm.filemap import _nr
    return range(folio, folio + _nr(k, folio))


class _Ext4Aops:
    """ext4_aops."""

    @staticmethod
    def readahead(k, mapping, folios):
        """ext4_mpage_readpages(): one bio per run of contiguous mapped blocks."""
        inode = mapping.host
        bdev = inode.i_sb.s_bdev
        mem = k.mem
        data = k.page_data
        blocks = inode.i_blocks
        disk = bdev.disk
        private = mem.private
        run = 0
        for folio in folios:
            index = mem.index[folio]
            pages = _folio_pages(k, folio)
            nr = len(pages)
            blks = [None if b is None else disk[b] for b in map(blocks.get, range(index, index + nr))]
            if nr > 1 and None not in blks and not mem.np_private[folio:folio + nr].any():
                # Every block mapped, a fresh folio: the folio's data in one copy.
                data._write_full_pages(pages, blks)
                run += len(blks)
            else:
                for page, blk in zip(pages, blks):
                    if blk is None:                  # a hole: zeroed, no I/O
                        submit_bio(bdev, False, run)
                        run = 0
                        if private[page]:
                            data.clear(page)
                        continue
                    data.write(page, 0, blk)
                    run += 1
            mem.flags[folio] = (mem.flags[folio] | PG_uptodate) & ~PG_locked
        submit_bio(bdev, False, run)

    @staticmethod
    def read_folio(k, mapping, folio):
        _Ext4Aops.readahead(k, mapping, [folio])

    @staticmethod
    def writepages(k, mapping, folios):
        """ext4_writepages(): write each folio's pages inside i_size to its blocks."""
        inode = mapping.host
        bdev = inode.i_sb.s_bdev
        mem = k.mem
        data = k.page_data
        last = (inode.i_size + 4095) >> 12
        run = 0
        prev = None
        for folio in folios:
            index = mem.index[folio]
            pages = _folio_pages(k, folio)[:max(last - index, 0)]
            if not pages:
                continue
            _ext4_set_blocks(inode, index, [_intern(data.read(page, 0, 4096)) for page in pages])
            if prev is not None and index != prev + 1:
                submit_bio(bdev, True, run)
                run = 0
            run += len(pages)
            prev = index + len(pages) - 1
        submit_bio(bdev, True, run)


ext4_aops = _Ext4Aops()


class _Ext4FileVmOps:
    """ext4_file_vm_ops."""
    name = "ext4_file_vm_ops"

    @staticmethod
    def fault(vmf):
        from vmsim.mm.filemap import filemap_fault
        return filemap_fault(vmf)

    @staticmethod
    def map_pages(vmf, start_pgoff, end_pgoff):
        return filemap_map_pages(vmf, start_pgoff, end_pgoff)

    @staticmethod
    def page_mkwrite(vmf):
        """ext4_page_mkwrite(): past EOF is SIGBUS; else dirty the folio."""
        from vmsim.mm.filemap import filemap_page_mkwrite
        from vmsim.mm.mm_types import VM_FAULT_SIGBUS
        inode = vmf.vma.vm_file.f_inode
        if vmf.pgoff >= (inode.i_size + 4095) >> 12:
            return VM_FAULT_SIGBUS
        return filemap_page_mkwrite(vmf)


ext4_file_vm_ops = _Ext4FileVmOps()


class _Ext4FileOps:
    """ext4_file_operations (the parts memory management sees)."""

    @staticmethod
    def mmap(file, vma) -> int:
        """ext4_file_mmap_prepare(): ext4_file_vm_ops (DAX: not modelled)."""
        vma.vm_ops = ext4_file_vm_ops
        return 0

    @staticmethod
    def get_unmapped_area(mm, file, addr, length, pgoff, flags):
        """thp_get_unmapped_area()."""
        from vmsim.mm.huge_memory import thp_get_unmapped_area_vmflags
        return thp_get_unmapped_area_vmflags(mm, file, addr, length, pgoff, flags, 0)


class ext4_sops:
    a_ops = ext4_aops
    f_op = _Ext4FileOps()
