//! Hot loops compiled twice: for the target's baseline (x86-64: SSE2, two `f64` or four `f32`
//! lanes to a register) and, on x86-64 CPUs that have it, for AVX2 (twice the lanes), chosen
//! at run time by [`run_kernel`]; the binaries target baseline x86-64, so this is how they use
//! the wider registers where they exist.
//!
//! Both compilations run the same safe code. Only AVX2 is enabled (no fused multiply-adds, and
//! Rust does not contract `a * b + c`), so every lane does the same IEEE operations in the same
//! order either way and the results are the same bits; each kernel's tests compare the two.
//! [`run_kernel`] holds the crate's only `unsafe` call.

/// A hot loop compiled twice (see the [module documentation](self)). `run` must be
/// `#[inline(always)]` with every loop it calls inlined as well, so that the AVX2 compilation
/// covers them.
pub(crate) trait Kernel {
    /// What the kernel returns.
    type Output;
    /// The kernel's work (the `INLINE` flag: whether out-of-line helpers are to be inlined,
    /// set in the AVX2 compilation).
    fn run<const INLINE: bool>(self) -> Self::Output;
}

/// Runs `kernel`, compiled for AVX2 on x86-64 CPUs that have it (detected at run time), else
/// for the baseline.
#[allow(unsafe_code)]
#[inline(always)]
pub(crate) fn run_kernel<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: `run_kernel_avx2` is safe code whose only requirement is the target feature
        // it was compiled with, AVX2, which this CPU has (checked just above).
        return unsafe { run_kernel_avx2(kernel) };
    }
    kernel.run::<false>()
}

/// [`run_kernel`]'s AVX2 compilation (the kernel is inlined into it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_kernel_avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<true>()
}
