//! Data parallelism for the batch commands (`check` over many manifests, `audit` over a large
//! cluster): contiguous chunks of a slice mapped on rayon's pool, results in input order.

/// Chunk size that gives each core a few chunks (rayon balances them); small inputs stay in one.
fn chunk_size(len: usize) -> usize {
    let cores = rayon::current_num_threads().max(1);
    if len < 512 {
        len.max(1)
    } else {
        len.div_ceil(cores * 4).max(64)
    }
}

/// Map `f` over contiguous chunks of `items` in parallel; results in chunk order.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&[T]) -> R + Sync + Send,
) -> Vec<R> {
    use rayon::prelude::*;
    items.par_chunks(chunk_size(items.len())).map(f).collect()
}

/// [`par_map`] over mutable chunks.
pub(crate) fn par_map_mut<T: Send, R: Send>(
    items: &mut [T],
    f: impl Fn(&mut [T]) -> R + Sync + Send,
) -> Vec<R> {
    use rayon::prelude::*;
    let size = chunk_size(items.len());
    items.par_chunks_mut(size).map(f).collect()
}
