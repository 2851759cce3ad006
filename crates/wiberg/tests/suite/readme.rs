//! The library snippet of README.md, kept compiling and checked.

use wiberg::{ArgminLayer, Damping, RbfMixture, Start};

#[test]
fn readme_snippet_runs() -> Result<(), wiberg::WibergError> {
    let points = vec![-0.2, 0.1, 0.3, 10.0]; // one sample's data
    let energy = RbfMixture::shared_width(1, points.clone())?; // E(t; sigma) = -sum exp(-(x_i - t)^2 / sigma^2)
    let layer = ArgminLayer::with_damping(Damping::TrustRegion { lambda: 0.1 });
    let sol = layer.forward(&energy, &[1.0], Start::Seeds(&points))?; // seeds, L-BFGS, damped Newton polish
    let back = layer.backward(&energy, &[1.0], &sol, &[2.0 * sol.y[0]])?; // dl/dt* for l = t*^2
    assert!(sol.y[0].abs() < 0.3 && sol.report.converged);
    assert!(back.grad_w[0].is_finite());
    assert_eq!(back.diagnostics.shift, 0.1);
    Ok(())
}
