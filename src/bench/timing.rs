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

/// What [`timed_group`] measured around the samples.
pub(super) struct Timed<T> {
    /// `(seconds, value)` of each repetition.
    pub samples: Vec<(f64, T)>,
    /// Where each of `samples` ran in its block: 0 for the block's first transfer.
    pub positions: Vec<usize>,
    /// Highest peak RSS over the repetitions.
    pub peak: Option<u64>,
    /// Whether `peak` is the row's own.
    pub scope: RssScope,
    /// CPU seconds per repetition (all threads).
    pub cpu: f64,
}

/// Collects the samples of one row one at a time, so the repetitions of two rows can
/// alternate ([`timed_group`]). The peak RSS is reset before each sample and the row keeps
/// the highest.
struct Sampler<T> {
    samples: Vec<(f64, T)>,
    positions: Vec<usize>,
    peak: Option<u64>,
    scoped: bool,
    cpu: f64,
}

impl<T> Sampler<T> {
    fn new() -> Self {
        Sampler {
            samples: Vec::new(),
            positions: Vec::new(),
            peak: None,
            scoped: true,
            cpu: 0.0,
        }
    }

    /// Runs and records one sample (`(seconds, value)`), the block's `position`-th transfer.
    fn sample(
        &mut self,
        position: usize,
        f: impl FnOnce() -> Result<(f64, T), BenchError>,
    ) -> Result<(), BenchError> {
        self.scoped &= rss::reset_peak();
        let c0 = cpu_time();
        let v = f()?;
        self.cpu += cpu_time() - c0;
        self.peak = self.peak.max(rss::current().peak_rss);
        self.samples.push(v);
        self.positions.push(position);
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
            positions: self.positions,
        }
    }
}

/// A measurement taken with its context: the loops of a block are timed by [`timed_group`].
pub(super) type Job<'a, T> = Box<dyn FnMut() -> Result<(f64, T), BenchError> + 'a>;

/// Times every job `cfg.repeat` times, rotating the order (forward on even repetitions,
/// backward on odd ones: ABBA for two), so a change in machine load or a warm cache left by
/// the previous transfer affects every row alike. Under TCG two runs of the same loop a
/// minute apart differ by up to 20 %; measured back to back they compare. `after` runs after
/// every sample, outside the measurement (checking what a restore left, for one). Then, while
/// `undecided` says the samples so far (each job's, in order) leave a verdict open, goes on in
/// the same rotation up to `cfg.max_repeat` repetitions.
///
/// First, `warmup` untimed rounds run every job once each, in order, each followed by
/// `after` as a timed one is; they count in the samples' positions.
pub(super) fn timed_group<T>(
    cfg: &BenchConfig,
    jobs: &mut [Job<'_, T>],
    warmup: usize,
    mut after: impl FnMut(usize) -> Result<(), BenchError>,
    mut undecided: impl FnMut(&[&[(f64, T)]]) -> bool,
) -> Result<Vec<Timed<T>>, BenchError> {
    let mut samplers: Vec<Sampler<T>> = jobs.iter().map(|_| Sampler::new()).collect();
    let n = jobs.len();
    let mut position = 0;
    for _ in 0..warmup {
        for (j, job) in jobs.iter_mut().enumerate() {
            if cfg.cancelled() {
                return Err(BenchError::Interrupted);
            }
            job()?;
            position += 1;
            after(j)?;
        }
    }
    let repeat = cfg.repeat.max(1);
    for i in 0.. {
        if i >= repeat {
            let so_far: Vec<&[(f64, T)]> = samplers.iter().map(|s| &s.samples[..]).collect();
            if i >= cfg.max_repeat || !undecided(&so_far) {
                break;
            }
        }
        for k in 0..n {
            if cfg.cancelled() {
                return Err(BenchError::Interrupted);
            }
            let j = if i % 2 == 0 { k } else { n - 1 - k };
            samplers[j].sample(position, &mut jobs[j])?;
            position += 1;
            after(j)?;
        }
    }
    Ok(samplers.into_iter().map(Sampler::finish).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn the_order_rotates_between_repetitions() {
        let mut cfg = BenchConfig::new(true);
        cfg.repeat = 3;
        let ran = RefCell::new(Vec::new());
        let mut jobs: Vec<Job<'_, ()>> = (0..4)
            .map(|j| {
                let ran = &ran;
                Box::new(move || {
                    ran.borrow_mut().push(j);
                    Ok((0.0, ()))
                }) as Job<'_, ()>
            })
            .collect();
        let timed = timed_group(&cfg, &mut jobs, 0, |_| Ok(()), |_| false).expect("timed");
        assert!(timed.iter().all(|t| t.samples.len() == 3));
        drop(jobs);
        let ran = ran.into_inner();
        assert_eq!(ran, [0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2, 3]);
        // Each job's samples say where in the block they ran.
        for (j, t) in timed.iter().enumerate() {
            let at: Vec<usize> = (0..ran.len()).filter(|&p| ran[p] == j).collect();
            assert_eq!(t.positions, at, "job {j}");
        }
    }

    /// The warm-up round runs every job once, in order, each checked by `after`; its
    /// transfers are not samples but count in the positions.
    #[test]
    fn a_warmup_round_runs_every_job_untimed_before_the_rotation() {
        let mut cfg = BenchConfig::new(true);
        cfg.repeat = 2;
        let ran = RefCell::new(Vec::new());
        let mut jobs: Vec<Job<'_, usize>> = (0..3usize)
            .map(|j| {
                let ran = &ran;
                Box::new(move || {
                    let mut r = ran.borrow_mut();
                    r.push(j);
                    // A transfer's "seconds" say which transfer of the block it was.
                    Ok((r.len() as f64, j))
                }) as Job<'_, usize>
            })
            .collect();
        let mut checked = Vec::new();
        let timed = timed_group(
            &cfg,
            &mut jobs,
            1,
            |j| {
                checked.push(j);
                Ok(())
            },
            |_| false,
        )
        .expect("timed");
        drop(jobs);
        assert_eq!(ran.into_inner(), [0, 1, 2, 0, 1, 2, 2, 1, 0]);
        assert_eq!(checked, [0, 1, 2, 0, 1, 2, 2, 1, 0]);
        let seconds: Vec<Vec<f64>> = timed
            .iter()
            .map(|t| t.samples.iter().map(|s| s.0).collect())
            .collect();
        assert_eq!(seconds, [[4.0, 9.0], [5.0, 8.0], [6.0, 7.0]]);
        assert_eq!(timed[0].positions, [3, 8]);
    }

    #[test]
    fn an_undecided_group_goes_on_in_the_same_rotation_up_to_max_repeat() {
        let group = |repeat: usize, max_repeat: usize, answers: &[bool]| {
            let mut cfg = BenchConfig::new(true);
            (cfg.repeat, cfg.max_repeat) = (repeat, max_repeat);
            let ran = RefCell::new(Vec::new());
            let mut jobs: Vec<Job<'_, usize>> = (0..2usize)
                .map(|j| {
                    let ran = &ran;
                    Box::new(move || {
                        ran.borrow_mut().push(j);
                        Ok((1.0, j))
                    }) as Job<'_, usize>
                })
                .collect();
            // How many samples each job had whenever the group asked.
            let mut asked = Vec::new();
            let timed = timed_group(
                &cfg,
                &mut jobs,
                0,
                |_| Ok(()),
                |so_far| {
                    asked.push(so_far.iter().map(|s| s.len()).collect::<Vec<_>>());
                    for (j, s) in so_far.iter().enumerate() {
                        assert!(s.iter().all(|x| x.1 == j), "job {j}'s own samples");
                    }
                    answers.get(asked.len() - 1).copied().unwrap_or(false)
                },
            )
            .expect("timed");
            drop(jobs);
            let rounds: Vec<usize> = timed.iter().map(|t| t.samples.len()).collect();
            (ran.into_inner(), asked, rounds)
        };
        // Open after 3 and after 4: the fifth is the last (max_repeat), not asked about.
        let (ran, asked, rounds) = group(3, 5, &[true, true]);
        assert_eq!(ran, [0, 1, 1, 0, 0, 1, 1, 0, 0, 1]);
        assert_eq!(asked, [[3, 3], [4, 4]]);
        assert_eq!(rounds, [5, 5]);
        // Settled after the fourth.
        let (_, asked, rounds) = group(3, 5, &[true, false]);
        assert_eq!((asked.len(), rounds), (2, vec![4, 4]));
        // Settled at once: `repeat` rounds.
        let (_, asked, rounds) = group(3, 5, &[false]);
        assert_eq!((asked.len(), rounds), (1, vec![3, 3]));
        // `max_repeat` at most `repeat`: never asked.
        let (_, asked, rounds) = group(3, 3, &[true]);
        assert_eq!((asked.len(), rounds), (0, vec![3, 3]));
        let (_, asked, rounds) = group(2, 1, &[true]);
        assert_eq!((asked.len(), rounds), (0, vec![2, 2]));
    }
}
