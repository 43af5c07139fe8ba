//! L2-regularized logistic regression over sparse rows, solved to convergence with L-BFGS.
//!
//! Why not linfa here: linfa's `LogisticRegression` (linfa-logistic) takes a dense `Array2`, and a
//! dense matrix of 2^20 hashed columns for 20,000 comments would need 160 GB. The objective is
//! liblinear's: `½‖W‖² + C Σᵢ sᵢ·lossᵢ`, with `sᵢ` the class weight of row `i`, the bias left
//! unregularized; binary problems use the sigmoid loss with one column, multiclass problems the
//! softmax (multinomial) loss with one column per class. Loss and gradient are evaluated in one
//! pass over the rows, split across threads into fixed contiguous chunks and summed in a fixed
//! order, so a run is bit-for-bit reproducible. Only the columns that occur in the training rows
//! are optimized (the rest stay exactly zero, as their gradient is zero from a zero start).

use std::collections::VecDeque;

use rayon::prelude::*;

/// Sparse rows in compressed (CSR) form, with column ids already compacted.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    /// Start of every row in `idx`/`val`, plus the end.
    pub indptr: Vec<usize>,
    /// Column ids.
    pub idx: Vec<u32>,
    /// Values.
    pub val: Vec<f32>,
}

impl Rows {
    /// An empty matrix.
    pub fn new() -> Self {
        Self {
            indptr: vec![0],
            idx: Vec::new(),
            val: Vec::new(),
        }
    }

    /// Appends one row.
    pub fn push(&mut self, row: impl IntoIterator<Item = (u32, f32)>) {
        for (i, v) in row {
            self.idx.push(i);
            self.val.push(v);
        }
        self.indptr.push(self.idx.len());
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows `picked`, in that order.
    pub fn subset(&self, picked: &[usize]) -> Rows {
        let mut out = Rows::new();
        for &i in picked {
            let (idx, val) = self.row(i);
            out.push(idx.iter().copied().zip(val.iter().copied()));
        }
        out
    }

    /// Row `i` as (columns, values).
    #[inline]
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (s, e) = (self.indptr[i], self.indptr[i + 1]);
        (&self.idx[s..e], &self.val[s..e])
    }
}

/// A weighted logistic regression problem.
pub struct Problem<'a> {
    /// The design matrix.
    pub rows: &'a Rows,
    /// Class index of every row (0/1 for binary).
    pub labels: &'a [u32],
    /// Weight of every row (class weighting).
    pub weights: &'a [f32],
    /// Output columns: 1 for a binary (sigmoid) problem, the class count for softmax.
    pub outputs: usize,
    /// Number of feature columns.
    pub dim: usize,
}

/// L-BFGS settings.
#[derive(Clone, Debug)]
pub struct Lbfgs {
    /// Correction pairs kept.
    pub memory: usize,
    /// Iteration cap.
    pub max_iter: usize,
    /// Stop when ‖g‖ ≤ tol·‖g₀‖.
    pub tol: f64,
    /// Worker threads for the loss and gradient.
    pub threads: usize,
}

impl Default for Lbfgs {
    fn default() -> Self {
        Self {
            memory: 10,
            max_iter: 400,
            tol: 1e-4,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// How a solve ended.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SolveReport {
    /// Iterations run.
    pub iterations: usize,
    /// Final objective value.
    pub objective: f64,
    /// Final ‖g‖ / ‖g₀‖.
    pub relative_gradient: f64,
    /// Whether the tolerance was reached (rather than the iteration cap).
    pub converged: bool,
}

impl Problem<'_> {
    /// Length of the parameter vector: `dim × outputs` weights, then `outputs` biases.
    pub fn params(&self) -> usize {
        (self.dim + 1) * self.outputs
    }

    /// Raw scores of row `i` into `z`.
    #[inline]
    pub fn margins(&self, w: &[f64], i: usize, z: &mut [f64]) {
        let k = self.outputs;
        let (idx, val) = self.rows.row(i);
        if k == 1 {
            // The binary case without the inner loop over outputs: most fits are binary.
            let mut s = w[self.dim];
            for (&j, &v) in idx.iter().zip(val) {
                s += v as f64 * w[j as usize];
            }
            z[0] = s;
            return;
        }
        z.copy_from_slice(&w[self.dim * k..]);
        for (&j, &v) in idx.iter().zip(val) {
            let row = &w[j as usize * k..][..k];
            for (zz, ww) in z.iter_mut().zip(row) {
                *zz += v as f64 * ww;
            }
        }
    }

    /// Objective and gradient at `w` (gradient written to `g`), using `buffers` per thread.
    fn evaluate(&self, w: &[f64], c: f64, g: &mut [f64], buffers: &mut [Vec<f64>]) -> f64 {
        let n = self.rows.len();
        let parts = buffers.len();
        let chunk = n.div_ceil(parts).max(1);
        let losses: Vec<f64> = std::thread::scope(|scope| {
            let handles: Vec<_> = buffers
                .iter_mut()
                .enumerate()
                .map(|(t, buf)| {
                    let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                    scope.spawn(move || self.partial(w, range, buf))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(f64::NAN))
                .collect()
        });
        let mut loss = 0.0;
        for l in &losses {
            loss += l;
        }
        let reg_len = self.dim * self.outputs;
        let regs: Vec<f64> = g
            .par_chunks_mut(CHUNK)
            .enumerate()
            .map(|(chunk, gc)| {
                let base = chunk * CHUNK;
                let mut reg = 0.0;
                for (o, gi) in gc.iter_mut().enumerate() {
                    let i = base + o;
                    let mut s = 0.0;
                    for b in buffers.iter() {
                        s += b[i];
                    }
                    *gi = c * s;
                    if i < reg_len {
                        *gi += w[i];
                        reg += w[i] * w[i];
                    }
                }
                reg
            })
            .collect();
        let reg: f64 = regs.iter().sum();
        0.5 * reg + c * loss
    }

    /// Weighted loss of rows `range`; their loss gradient is written to `grad` (zeroed first).
    fn partial(&self, w: &[f64], range: std::ops::Range<usize>, grad: &mut [f64]) -> f64 {
        grad.iter_mut().for_each(|x| *x = 0.0);
        let k = self.outputs;
        let bias_at = self.dim * k;
        let mut z = vec![0.0; k];
        let mut loss = 0.0;
        for i in range {
            self.margins(w, i, &mut z);
            let y = self.labels[i] as usize;
            let s = self.weights[i] as f64;
            if k == 1 {
                let t = if y == 1 { 1.0 } else { 0.0 };
                loss += s * (softplus(z[0]) - t * z[0]);
                z[0] = s * (sigmoid(z[0]) - t);
            } else {
                let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                let mut sum = 0.0;
                for v in z.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                loss += s * (sum.ln() - ((z[y]).ln()));
                for (c, v) in z.iter_mut().enumerate() {
                    *v = s * (*v / sum - if c == y { 1.0 } else { 0.0 });
                }
            }
            let (idx, val) = self.rows.row(i);
            if k == 1 {
                let d = z[0];
                for (&j, &v) in idx.iter().zip(val) {
                    grad[j as usize] += v as f64 * d;
                }
            } else {
                for (&j, &v) in idx.iter().zip(val) {
                    let row = &mut grad[j as usize * k..][..k];
                    for (gg, d) in row.iter_mut().zip(&z) {
                        *gg += v as f64 * d;
                    }
                }
            }
            for (gg, d) in grad[bias_at..].iter_mut().zip(&z) {
                *gg += d;
            }
        }
        loss
    }

    /// Minimizes the objective for regularization `c`, starting from `init` (warm start) or zero.
    pub fn solve(&self, c: f64, init: Option<Vec<f64>>, opts: &Lbfgs) -> (Vec<f64>, SolveReport) {
        let m = self.params();
        let mut x = init
            .filter(|v| v.len() == m)
            .unwrap_or_else(|| vec![0.0; m]);
        let mut buffers = vec![vec![0.0; m]; opts.threads.max(1)];
        let mut g = vec![0.0; m];
        let mut f = self.evaluate(&x, c, &mut g, &mut buffers);
        let g0 = norm(&g).max(1e-300);
        let mut history: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
        let mut d = vec![0.0; m];
        let mut x_new = vec![0.0; m];
        let mut g_new = vec![0.0; m];
        let mut report = SolveReport {
            iterations: 0,
            objective: f,
            relative_gradient: 1.0,
            converged: false,
        };
        for iter in 0..opts.max_iter {
            report.iterations = iter;
            report.relative_gradient = norm(&g) / g0;
            if report.relative_gradient <= opts.tol {
                report.converged = true;
                break;
            }
            direction(&g, &history, &mut d);
            let mut slope = dot(&g, &d);
            if slope >= 0.0 {
                history.clear();
                d.iter_mut().zip(&g).for_each(|(di, gi)| *di = -gi);
                slope = dot(&g, &d);
            }
            let mut step = if history.is_empty() {
                1.0 / norm(&g).max(1.0)
            } else {
                1.0
            };
            let mut f_new;
            let mut tries = 0;
            loop {
                x_new.copy_from_slice(&x);
                axpy(step, &d, &mut x_new);
                f_new = self.evaluate(&x_new, c, &mut g_new, &mut buffers);
                if f_new <= f + 1e-4 * step * slope || tries >= 40 {
                    break;
                }
                // Backtrack by quadratic interpolation, kept within [0.1, 0.5] of the step.
                let q = -slope * step * step / (2.0 * (f_new - f - slope * step));
                step = q.clamp(0.1 * step, 0.5 * step);
                tries += 1;
            }
            if !(f_new < f || f_new <= f + 1e-12 * f.abs()) {
                break; // no progress possible at this precision
            }
            // Reuse the oldest pair's buffers once the memory is full.
            let (mut s, mut y) = match history.len() == opts.memory {
                true => history
                    .pop_front()
                    .map(|(s, y, _)| (s, y))
                    .unwrap_or_default(),
                false => (vec![0.0; m], vec![0.0; m]),
            };
            s.resize(m, 0.0);
            y.resize(m, 0.0);
            diff(&x_new, &x, &mut s);
            diff(&g_new, &g, &mut y);
            let sy = dot(&s, &y);
            if sy > 1e-12 {
                history.push_back((s, y, sy));
            }
            std::mem::swap(&mut x, &mut x_new);
            std::mem::swap(&mut g, &mut g_new);
            let rel_drop = (f - f_new) / f.abs().max(1.0);
            f = f_new;
            report.objective = f;
            if rel_drop < 1e-10 {
                report.relative_gradient = norm(&g) / g0;
                report.converged = true;
                report.iterations = iter + 1;
                break;
            }
        }
        (x, report)
    }
}

/// The L-BFGS two-loop recursion: `d = -H·g`.
fn direction(g: &[f64], history: &VecDeque<(Vec<f64>, Vec<f64>, f64)>, d: &mut [f64]) {
    d.par_iter_mut().zip(g).for_each(|(di, gi)| *di = -gi);
    let mut alphas = Vec::with_capacity(history.len());
    for (s, y, sy) in history.iter().rev() {
        let a = dot(s, d) / sy;
        axpy(-a, y, d);
        alphas.push(a);
    }
    if let Some((_, y, sy)) = history.back() {
        let gamma = sy / dot(y, y);
        d.par_iter_mut().for_each(|v| *v *= gamma);
    }
    for ((s, y, sy), a) in history.iter().zip(alphas.iter().rev()) {
        let b = dot(y, d) / sy;
        axpy(a - b, s, d);
    }
}

/// Vector operations run on all cores in fixed chunks; partial sums are added in chunk order,
/// so results do not depend on thread scheduling.
const CHUNK: usize = 1 << 15;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    let parts: Vec<f64> = a
        .par_chunks(CHUNK)
        .zip(b.par_chunks(CHUNK))
        .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum())
        .collect();
    parts.iter().sum()
}

fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(yc, xc)| yc.iter_mut().zip(xc).for_each(|(yi, xi)| *yi += a * xi));
}

/// `out = a - b`, in parallel.
fn diff(a: &[f64], b: &[f64], out: &mut [f64]) {
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (x, y))| {
            o.iter_mut()
                .zip(x.iter().zip(y))
                .for_each(|(oi, (p, q))| *oi = p - q)
        });
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// The logistic function.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[inline]
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> (Rows, Vec<u32>) {
        // Two separable-ish clusters on columns 0/1 with a shared noisy column 2.
        let mut rows = Rows::new();
        let mut labels = Vec::new();
        for i in 0..40 {
            let y = (i % 2) as u32;
            let noise = ((i * 7) % 5) as f32 / 10.0;
            rows.push([(y, 1.0), (2, noise)]);
            labels.push(y);
        }
        (rows, labels)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (rows, labels) = toy();
        let weights = vec![1.0; labels.len()];
        for outputs in [1, 2] {
            let p = Problem {
                rows: &rows,
                labels: &labels,
                weights: &weights,
                outputs,
                dim: 3,
            };
            let m = p.params();
            let w: Vec<f64> = (0..m).map(|i| (i as f64 * 0.37).sin()).collect();
            let mut g = vec![0.0; m];
            let mut bufs = vec![vec![0.0; m]; 2];
            let f = p.evaluate(&w, 0.7, &mut g, &mut bufs);
            for i in 0..m {
                let mut w2 = w.clone();
                w2[i] += 1e-6;
                let mut g2 = vec![0.0; m];
                let f2 = p.evaluate(&w2, 0.7, &mut g2, &mut bufs);
                let fd = (f2 - f) / 1e-6;
                assert!(
                    (fd - g[i]).abs() < 1e-3 * (1.0 + fd.abs()),
                    "param {i}: fd {fd} vs {}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn converges_and_separates() {
        let (rows, labels) = toy();
        let weights = vec![1.0; labels.len()];
        let p = Problem {
            rows: &rows,
            labels: &labels,
            weights: &weights,
            outputs: 1,
            dim: 3,
        };
        let (w, report) = p.solve(10.0, None, &Lbfgs::default());
        assert!(report.converged, "{report:?}");
        let mut z = [0.0];
        for (i, label) in labels.iter().enumerate() {
            p.margins(&w, i, &mut z);
            assert_eq!(z[0] > 0.0, *label == 1);
        }
    }

    #[test]
    fn thread_count_does_not_change_the_result() {
        let (rows, labels) = toy();
        let weights = vec![1.0; labels.len()];
        let p = Problem {
            rows: &rows,
            labels: &labels,
            weights: &weights,
            outputs: 2,
            dim: 3,
        };
        let one = p
            .solve(
                1.0,
                None,
                &Lbfgs {
                    threads: 1,
                    ..Lbfgs::default()
                },
            )
            .0;
        let two = p
            .solve(
                1.0,
                None,
                &Lbfgs {
                    threads: 2,
                    ..Lbfgs::default()
                },
            )
            .0;
        for (a, b) in one.iter().zip(&two) {
            assert!((a - b).abs() < 1e-9);
        }
    }
}
