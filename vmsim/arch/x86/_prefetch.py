"""vmsim-only: a cache prefetch for the compiled access loops (LLVM's llvm.prefetch).

Not a kernel file: the host CPU's prefetch instruction, so the chunk loop can start
loading the page-table entry of an access some accesses ahead while it walks the current
one (a random trace misses the host's caches on nearly every PTE; without this only the
one or two walks the out-of-order window holds overlap). A prefetch reads nothing into
the program and changes no state; the plain-Python loop uses :func:`_prefetch_none`.
Imported only when numba is (the compiled build of mmu_batch).
"""
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Prefetch ``arr[idx]`` for reading (locality 3: keep it in every cache level);
    ``idx`` an int, or a tuple of one per dimension."""
    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = (cgutils.unpack_tuple(builder, args[1]) if isinstance(signature.args[1], types.BaseTuple)
               else [args[1]])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.void(arr, idx), codegen
