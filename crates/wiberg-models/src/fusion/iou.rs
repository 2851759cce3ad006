//! Overlap (IoU) of a predicted axis-aligned box with a ground-truth region, bounded by the
//! image as VOT computes it: both regions are first cut to the image rectangle, then
//! `|A ∩ B| / |A ∪ B|`. (VOT's toolkit rasterises; we use exact polygon areas.)
//!
//! The ground truth is cut to the image once per frame with `geo`'s boolean operations (any
//! polygon, convex or not); a box is then intersected with those pieces by clipping them to
//! the box (Sutherland–Hodgman against a convex window is exact for any subject polygon), which
//! is what makes the millions of overlaps of an evaluation cheap. Tests check it against `geo`.

use super::vot::Region;
use geo::{Area, BooleanOps, LineString, Polygon};

/// Axis-aligned box `[x0, y0, x1, y1]`.
pub type BoxXyxy = [f64; 4];

/// A ground-truth region cut to the image, ready for many overlaps.
#[derive(Debug, Clone)]
pub struct GroundTruthArea {
    pieces: Vec<Vec<[f64; 2]>>,
    area: f64,
    image: Option<BoxXyxy>,
}

fn to_geo(points: &[[f64; 2]]) -> Polygon<f64> {
    Polygon::new(LineString::from(points.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>()), vec![])
}

fn rect_polygon(b: &BoxXyxy) -> Polygon<f64> {
    to_geo(&[[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]])
}

/// Absolute area of a simple polygon (shoelace).
pub fn polygon_area(points: &[[f64; 2]]) -> f64 {
    let n = points.len();
    if n < 3 {
        return 0.0;
    }
    let mut s = 0.0;
    for i in 0..n {
        let (a, b) = (points[i], points[(i + 1) % n]);
        s += a[0] * b[1] - a[1] * b[0];
    }
    0.5 * s.abs()
}

/// Clips `poly` to the axis-aligned box `b` (Sutherland–Hodgman; `b` is convex, so the area of
/// the result is exact for any simple `poly`).
pub fn clip_to_box(poly: &[[f64; 2]], b: &BoxXyxy) -> Vec<[f64; 2]> {
    let mut out: Vec<[f64; 2]> = poly.to_vec();
    // (axis, bound, keep_greater)
    let edges = [(0usize, b[0], true), (0, b[2], false), (1, b[1], true), (1, b[3], false)];
    let mut input = Vec::with_capacity(8);
    for (axis, bound, greater) in edges {
        if out.is_empty() {
            break;
        }
        std::mem::swap(&mut input, &mut out);
        out.clear();
        let inside = |p: &[f64; 2]| if greater { p[axis] >= bound } else { p[axis] <= bound };
        let n = input.len();
        for i in 0..n {
            let cur = input[i];
            let prev = input[(i + n - 1) % n];
            let (ci, pi) = (inside(&cur), inside(&prev));
            if ci != pi {
                let t = (bound - prev[axis]) / (cur[axis] - prev[axis]);
                let mut q = [prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])];
                q[axis] = bound;
                out.push(q);
            }
            if ci {
                out.push(cur);
            }
        }
    }
    out
}

/// Cuts a box to the image (empty boxes stay empty).
fn cut_box(b: &BoxXyxy, image: Option<&BoxXyxy>) -> BoxXyxy {
    match image {
        Some(im) => [b[0].max(im[0]), b[1].max(im[1]), b[2].min(im[2]), b[3].min(im[3])],
        None => *b,
    }
}

fn box_area(b: &BoxXyxy) -> f64 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

impl GroundTruthArea {
    /// The ground-truth `region` cut to the image `[0, 0, width, height]` (no cut if `None`).
    pub fn new(region: &Region, image_size: Option<[f64; 2]>) -> Self {
        let points = region.points().to_vec();
        let image = image_size.map(|[w, h]| [0.0, 0.0, w, h]);
        let pieces: Vec<Vec<[f64; 2]>> = match &image {
            Some(im) => {
                let cut = to_geo(&points).intersection(&rect_polygon(im));
                cut.0.iter().map(|p| p.exterior().points().skip(1).map(|c| [c.x(), c.y()]).collect()).collect()
            }
            None => vec![points],
        };
        let area = pieces.iter().map(|p| polygon_area(p)).sum();
        GroundTruthArea { pieces, area, image }
    }

    /// The largest piece of the ground truth inside the image (for drawing).
    pub fn outline(&self) -> &[[f64; 2]] {
        self.pieces.iter().max_by(|a, b| polygon_area(a).total_cmp(&polygon_area(b))).map_or(&[], |p| p.as_slice())
    }

    /// Area of the ground truth inside the image.
    pub fn area(&self) -> f64 {
        self.area
    }

    /// IoU of the axis-aligned box `b` with this region, both bounded by the image. A box
    /// with `x1 <= x0` or `y1 <= y0` (empty) has IoU 0.
    pub fn iou(&self, b: &BoxXyxy) -> f64 {
        let bb = cut_box(b, self.image.as_ref());
        let ba = box_area(&bb);
        if ba <= 0.0 || self.area <= 0.0 {
            return 0.0;
        }
        let inter: f64 = self.pieces.iter().map(|p| polygon_area(&clip_to_box(p, &bb))).sum();
        let union = ba + self.area - inter;
        if union > 0.0 {
            (inter / union).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// Reference IoU computed with `geo` alone (slow; for tests and cross-checks).
pub fn iou_geo(b: &BoxXyxy, region: &Region, image_size: Option<[f64; 2]>) -> f64 {
    if b[2] <= b[0] || b[3] <= b[1] {
        return 0.0;
    }
    let gt = to_geo(&region.points());
    let bp = rect_polygon(b);
    let (gt, bp) = match image_size {
        Some([w, h]) => {
            let im = rect_polygon(&[0.0, 0.0, w, h]);
            (gt.intersection(&im), bp.intersection(&im))
        }
        None => (geo::MultiPolygon(vec![gt]), geo::MultiPolygon(vec![bp])),
    };
    let inter = gt.intersection(&bp).unsigned_area();
    let union = gt.union(&bp).unsigned_area();
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_disjoint() {
        let r = Region::Rect([10.0, 10.0, 20.0, 10.0]);
        let g = GroundTruthArea::new(&r, Some([100.0, 100.0]));
        assert!((g.iou(&[10.0, 10.0, 30.0, 20.0]) - 1.0).abs() < 1e-12);
        assert_eq!(g.iou(&[50.0, 50.0, 60.0, 60.0]), 0.0);
        assert_eq!(g.iou(&[20.0, 10.0, 20.0, 20.0]), 0.0);
    }

    #[test]
    fn rotated_square_vs_box_by_hand() {
        // Diamond |x - 2| + |y - 2| <= 2 (area 8) against the box [2, 0, 4, 4]: the right
        // half of the diamond, area 4. IoU = 4 / (8 + 8 - 4) = 1/3.
        let d = Region::Polygon([2.0, 0.0, 4.0, 2.0, 2.0, 4.0, 0.0, 2.0]);
        let g = GroundTruthArea::new(&d, None);
        assert!((g.iou(&[2.0, 0.0, 4.0, 4.0]) - 1.0 / 3.0).abs() < 1e-12);
        // The box [1, 1, 3, 3] lies inside the diamond: IoU = 4 / 8.
        assert!((g.iou(&[1.0, 1.0, 3.0, 3.0]) - 0.5).abs() < 1e-12);
        assert!((iou_geo(&[2.0, 0.0, 4.0, 4.0], &d, None) - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn box_partly_outside_the_image_by_hand() {
        // Image 10 x 10; ground truth [6, 2, 10, 6] (area 16, inside). Box [8, 2, 14, 6]:
        // cut to [8, 2, 10, 6] (area 8), intersection 8, union 16 -> 0.5. Without the image
        // bound it would be 8 / (16 + 24 - 8) = 0.25.
        let r = Region::Rect([6.0, 2.0, 4.0, 4.0]);
        let g = GroundTruthArea::new(&r, Some([10.0, 10.0]));
        assert!((g.iou(&[8.0, 2.0, 14.0, 6.0]) - 0.5).abs() < 1e-12);
        let unbounded = GroundTruthArea::new(&r, None);
        assert!((unbounded.iou(&[8.0, 2.0, 14.0, 6.0]) - 0.25).abs() < 1e-12);
        // Ground truth sticking out of the image is cut too: [8, 0, 12, 4] -> [8, 0, 10, 4].
        let r = Region::Rect([8.0, 0.0, 4.0, 4.0]);
        let g = GroundTruthArea::new(&r, Some([10.0, 10.0]));
        assert!((g.area() - 8.0).abs() < 1e-12);
        assert!((g.iou(&[8.0, 0.0, 10.0, 4.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn fast_path_agrees_with_geo() {
        let regions = [
            Region::Polygon([30.0, 5.0, 62.0, 20.0, 48.0, 55.0, 14.0, 38.0]),
            Region::Polygon([-10.0, 40.0, 30.0, 30.0, 40.0, 90.0, 0.0, 95.0]),
            Region::Rect([70.0, 60.0, 50.0, 50.0]),
        ];
        for (k, r) in regions.iter().enumerate() {
            let g = GroundTruthArea::new(r, Some([100.0, 80.0]));
            for i in 0..40 {
                let f = i as f64;
                let b =
                    [(f * 7.3) % 60.0 - 5.0, (f * 3.1) % 50.0, (f * 7.3) % 60.0 + 10.0 + f, (f * 3.1) % 50.0 + 25.0];
                let fast = g.iou(&b);
                let slow = iou_geo(&b, r, Some([100.0, 80.0]));
                // geo snaps coordinates to a fixed grid internally: agreement to ~1e-9.
                assert!((fast - slow).abs() < 1e-7, "region {k} box {b:?}: {fast} vs {slow}");
            }
        }
    }
}
