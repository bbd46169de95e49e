//! Timing of repeated transfers: wall time, CPU time and peak RSS per sample, and the
//! alternation (ABBA) of a reference loop with the harness.

use super::config::BenchConfig;
use super::error::BenchError;
use super::rss::{self, RssScope};

/// CPU time (user + system) this process has used so far, seconds.
pub fn cpu_time() -> f64 {
    // SAFETY: rusage is plain data; getrusage fills it and returns 0 on success.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// What [`timed`] measured around the samples.
pub(super) struct Timed<T> {
    /// `(seconds, value)` of each repetition.
    pub samples: Vec<(f64, T)>,
    /// Highest peak RSS over the repetitions.
    pub peak: Option<u64>,
    /// Whether `peak` is the row's own.
    pub scope: RssScope,
    /// CPU seconds per repetition (all threads).
    pub cpu: f64,
}

/// Collects the samples of one row one at a time, so the repetitions of two rows can
/// alternate ([`timed_pair`]). The peak RSS is reset before each sample and the row keeps
/// the highest.
struct Sampler<T> {
    samples: Vec<(f64, T)>,
    peak: Option<u64>,
    scoped: bool,
    cpu: f64,
}

impl<T> Sampler<T> {
    fn new() -> Self {
        Sampler {
            samples: Vec::new(),
            peak: None,
            scoped: true,
            cpu: 0.0,
        }
    }

    /// Runs and records one sample (`(seconds, value)`).
    fn sample(
        &mut self,
        f: impl FnOnce() -> Result<(f64, T), BenchError>,
    ) -> Result<(), BenchError> {
        self.scoped &= rss::reset_peak();
        let c0 = cpu_time();
        let v = f()?;
        self.cpu += cpu_time() - c0;
        self.peak = self.peak.max(rss::current().peak_rss);
        self.samples.push(v);
        Ok(())
    }

    fn finish(self) -> Timed<T> {
        let n = self.samples.len().max(1) as f64;
        Timed {
            peak: self.peak,
            scope: if self.scoped {
                RssScope::Mode
            } else {
                RssScope::Process
            },
            cpu: self.cpu / n,
            samples: self.samples,
        }
    }
}

/// Times `f` `n` times; returns the samples (each a `(seconds, value)`), the peak RSS, its
/// scope and the CPU time per repetition. Stops at the first error.
pub(super) fn timed<T>(
    n: usize,
    mut f: impl FnMut() -> Result<(f64, T), BenchError>,
) -> Result<Timed<T>, BenchError> {
    let mut s = Sampler::new();
    for _ in 0..n.max(1) {
        s.sample(&mut f)?;
    }
    Ok(s.finish())
}

/// Times a reference loop and the harness `cfg.repeat` times each, alternating (ABBA: raw first on
/// even repetitions, the harness first on odd ones), so a change in machine load or a warm
/// cache left by the previous transfer affects both rows alike. Under TCG two runs of the same
/// loop a minute apart differ by up to 20 %; measured back to back they compare.
pub(super) fn timed_pair<A, B>(
    cfg: &BenchConfig,
    mut reference: impl FnMut() -> Result<(f64, A), BenchError>,
    mut harness: impl FnMut() -> Result<(f64, B), BenchError>,
) -> Result<(Timed<A>, Timed<B>), BenchError> {
    let (mut a, mut b) = (Sampler::new(), Sampler::new());
    for i in 0..cfg.repeat.max(1) {
        if cfg.cancelled() {
            return Err(BenchError::Interrupted);
        }
        if i % 2 == 0 {
            a.sample(&mut reference)?;
            b.sample(&mut harness)?;
        } else {
            b.sample(&mut harness)?;
            a.sample(&mut reference)?;
        }
    }
    Ok((a.finish(), b.finish()))
}
