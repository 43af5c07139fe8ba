//! The weight table, quantized: one `i16` per bucket and column, with one `f32` scale per
//! column (`value = q × scale`). A 2^20-bucket, 8-column model is 16 MB, which stays in a
//! typical L3 cache; as `f32` it would be 32 MB and every n-gram lookup would go to memory.
//! The rounding error is at most half a step, `max|column| / 65534`.

use super::pages::Weights;

/// Buckets × columns of quantized weights; column 0 holds the IDF.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    stride: usize,
    scales: Vec<f32>,
    data: Weights,
}

impl Table {
    /// Quantizes a row-major `f32` table of `stride` columns (scale per column: max |value|).
    pub fn quantize(values: &[f32], stride: usize) -> Self {
        let mut max = vec![0.0f32; stride];
        for row in values.chunks_exact(stride) {
            for (m, v) in max.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
        let scales: Vec<f32> = max
            .iter()
            .map(|&m| if m > 0.0 { m / i16::MAX as f32 } else { 1.0 })
            .collect();
        let data = values
            .chunks_exact(stride)
            .flat_map(|row| row.iter().zip(&scales).map(|(v, s)| (v / s).round() as i16))
            .collect();
        Self {
            stride,
            scales,
            data: Weights::new(data),
        }
    }

    /// Rebuilds a table from its stored parts, `data` as little-endian `i16` pairs; `None`
    /// when the sizes do not fit.
    pub fn from_le_bytes(stride: usize, scales: Vec<f32>, data: &[u8]) -> Option<Self> {
        (stride > 0
            && scales.len() == stride
            && data.len() % (2 * stride) == 0
            && scales.iter().all(|s| s.is_finite() && *s > 0.0))
        .then(|| Self {
            stride,
            scales,
            data: Weights::from_le_bytes(data),
        })
    }

    /// Columns per row.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// Number of rows (buckets).
    pub fn rows(&self) -> usize {
        self.data.len() / self.stride
    }

    /// Scale of every column.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// The quantized values, row-major.
    pub fn data(&self) -> &[i16] {
        &self.data
    }

    /// The quantized row of a bucket.
    #[inline]
    pub fn row(&self, bucket: u32) -> &[i16] {
        &self.data[bucket as usize * self.stride..][..self.stride]
    }

    /// Hints the CPU to fetch a bucket's row into cache (a no-op off x86-64).
    #[inline]
    pub fn prefetch(&self, bucket: u32) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            if let Some(row) = self.data.get(bucket as usize * self.stride) {
                // SAFETY: SSE is part of the x86-64 baseline, and a prefetch of a valid
                // address has no effect on memory or program state.
                unsafe { _mm_prefetch::<_MM_HINT_T0>((row as *const i16).cast::<i8>()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = bucket;
    }

    /// One value, dequantized.
    #[inline]
    pub fn get(&self, bucket: u32, column: usize) -> f32 {
        self.row(bucket)[column] as f32 * self.scales[column]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantization_error_is_within_half_a_step() {
        let values: Vec<f32> = (0..300)
            .map(|i| ((i as f32) * 0.731).sin() * (1 + i % 3) as f32)
            .collect();
        let t = Table::quantize(&values, 3);
        assert_eq!(t.rows(), 100);
        for (i, v) in values.iter().enumerate() {
            let got = t.get((i / 3) as u32, i % 3);
            assert!(
                (got - v).abs() <= t.scales()[i % 3] * 0.5 + 1e-7,
                "{i}: {got} vs {v}"
            );
        }
    }

    #[test]
    fn all_zero_column_keeps_a_usable_scale() {
        let t = Table::quantize(&[0.0, 1.0, 0.0, -2.0], 2);
        assert_eq!(t.get(1, 0), 0.0);
        assert_eq!(t.get(1, 1), -2.0);
    }
}
