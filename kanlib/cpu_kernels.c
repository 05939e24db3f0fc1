/* A KAN layer's loss-evaluation kernels for the CPU (kanlib.cpu_kernels builds and calls them).
 *
 * Plain C99, float64, one thread, no torch headers (so it builds in a second with any C compiler).
 * Every function works on S independent models stored one after another (leading model axis S):
 * model s's numbers come from the same loops in the same order whatever S is, so a stack of models
 * computes exactly what each model computes alone.
 *
 * Conventions are kanlib.bspline's: a layer with `in` inputs has per input i uniform knots
 * t[0..n_intervals] with spacing h; s = (x - t[0]) / h = shift[i] + x * inv_h[i], clamped to
 * [-1, n_intervals] (NaN -> -1); interval j = floor(s), u = s - j; the k+1 possibly non-zero
 * basis functions are B_{j-k+r}(x) = sum_p M[r][p] u^p (r, p = 0..k); a coefficient index j-k+r
 * outside [0, n) contributes nothing (kanlib's zero padding). Each edge computes
 * scale_base * silu(x) + scale_sp * spline(x), each output sums its edges.
 *
 * Shapes (all contiguous, row-major), e = (s * in + i) * B + b:
 *   x (S, in, B), coef (S, in, out, n), scale_base and scale_sp (S, in, out), shift and inv_h (S, in),
 *   M (k+1, k+1), first (S, in, B) long, val and dval (S, in, B, k+1), base and dbase (S, in, B),
 *   y and grad_y (S, out, B).
 */
#include <math.h>
#include <string.h>

#define MAX_ORDER 7 /* k <= MAX_ORDER: kanlib.cpu_kernels checks it before calling */

/* Each kernel's body is inlined twice: once with k = 3 (cubic splines, kanlib's default: a constant k
 * lets the compiler unroll the loops over the k+1 basis functions) and once for any k. The sums run in
 * the same order in both, so they give the same numbers. */
#define INLINE static inline __attribute__((always_inline))

/* Basis (and d/dx when dval != NULL), silu(x) and silu'(x) (when dbase != NULL) at every sample. */
INLINE void layer_basis(long S, long in, long B, const long k, long n_intervals, const double *x, const double *shift,
                     const double *inv_h, const double *M, long *first, double *val, double *dval, double *base,
                     double *dbase) {
    double pw[MAX_ORDER + 1];
    for (long row = 0; row < S * in; row++) {
        for (long b = 0; b < B; b++) {
            long e = row * B + b;
            double xv = x[e];
            double s = shift[row] + xv * inv_h[row];
            if (isnan(s)) s = -1.0;
            if (s < -1.0) s = -1.0;
            if (s > (double)n_intervals) s = (double)n_intervals;
            double j = floor(s);
            double u = s - j;
            pw[0] = 1.0;
            for (long p = 1; p <= k; p++) pw[p] = pw[p - 1] * u;
            for (long r = 0; r <= k; r++) {
                const double *m = M + r * (k + 1);
                double v = m[0];
                for (long p = 1; p <= k; p++) v += m[p] * pw[p];
                val[e * (k + 1) + r] = v;
                if (dval) {
                    double d = 0.0;
                    for (long p = 1; p <= k; p++) d += m[p] * (double)p * pw[p - 1];
                    dval[e * (k + 1) + r] = d * inv_h[row];
                }
            }
            first[e] = (long)j - k;
            double sig = 1.0 / (1.0 + exp(-xv));
            base[e] = xv * sig;
            if (dbase) dbase[e] = sig * (1.0 + xv * (1.0 - sig));
        }
    }
}

/* sum_r c[f + r] * w[r] over the terms whose coefficient index f + r is in [0, n), r ascending. */
INLINE double window_dot(const double *c, const double *w, long f, const long k, long n) {
    double sum = 0.0;
    if (f >= 0 && f + k < n) { /* the whole window inside: no test per term */
        for (long r = 0; r <= k; r++) sum += c[f + r] * w[r];
    } else {
        for (long r = 0; r <= k; r++)
            if (f + r >= 0 && f + r < n) sum += c[f + r] * w[r];
    }
    return sum;
}

/* gc[f + r] += a * w[r] for the coefficient indices f + r in [0, n). */
INLINE void window_add(double *gc, double a, const double *w, long f, const long k, long n) {
    if (f >= 0 && f + k < n) {
        for (long r = 0; r <= k; r++) gc[f + r] += a * w[r];
    } else {
        for (long r = 0; r <= k; r++)
            if (f + r >= 0 && f + r < n) gc[f + r] += a * w[r];
    }
}

/* y = sum_i scale_base * silu(x_i) + scale_sp * spline_i(x_i), from a basis of kan_layer_basis. */
INLINE void layer_forward(long S, long in, long out, long B, long n, const long k, const double *coef, const double *sb,
                       const double *ss, const long *first, const double *val, const double *base, double *y) {
    memset(y, 0, sizeof(double) * S * out * B);
    for (long s = 0; s < S; s++) {
        for (long i = 0; i < in; i++) {
            long row = s * in + i;
            for (long o = 0; o < out; o++) {
                long io = row * out + o;
                const double *c = coef + io * n;
                double wb = sb[io], ws = ss[io];
                double *yo = y + (s * out + o) * B;
                for (long b = 0; b < B; b++) {
                    long e = row * B + b;
                    double spline = window_dot(c, val + e * (k + 1), first[e], k, n);
                    yo[b] += wb * base[e] + ws * spline;
                }
            }
        }
    }
}

/* Per model s: loss[s] = mean over its m outputs of (h - y)^2, grad = 2 (h - y) / m. */
void kan_mse(long S, long m, const double *h, const double *y, double *grad, double *loss) {
    double scale = 2.0 / (double)m;
    for (long s = 0; s < S; s++) {
        double sum = 0.0;
        for (long e = s * m; e < (s + 1) * m; e++) {
            double r = h[e] - y[e];
            sum += r * r;
            grad[e] = r * scale;
        }
        loss[s] = sum / (double)m;
    }
}

/* Gradients for grad_y: grad_coef (S, in, out, n), grad_sb and grad_ss (S, in, out), and grad_x
 * (S, in, B) when not NULL (then the basis must have dval and dbase). */
INLINE void layer_backward(long S, long in, long out, long B, long n, const long k, const double *coef, const double *sb,
                        const double *ss, const long *first, const double *val, const double *dval,
                        const double *base, const double *dbase, const double *grad_y, double *grad_coef,
                        double *grad_sb, double *grad_ss, double *grad_x) {
    memset(grad_coef, 0, sizeof(double) * S * in * out * n);
    if (grad_x) memset(grad_x, 0, sizeof(double) * S * in * B);
    for (long s = 0; s < S; s++) {
        for (long i = 0; i < in; i++) {
            long row = s * in + i;
            for (long o = 0; o < out; o++) {
                long io = row * out + o;
                const double *c = coef + io * n;
                double *gc = grad_coef + io * n;
                double wb = sb[io], ws = ss[io], sum_base = 0.0, sum_spline = 0.0;
                const double *g = grad_y + (s * out + o) * B;
                for (long b = 0; b < B; b++) {
                    long e = row * B + b, f = first[e];
                    const double *v = val + e * (k + 1);
                    double gs = ws * g[b];
                    double spline = window_dot(c, v, f, k, n);
                    window_add(gc, gs, v, f, k, n);
                    sum_base += base[e] * g[b];
                    sum_spline += spline * g[b];
                    if (grad_x) grad_x[e] += wb * g[b] * dbase[e] + gs * window_dot(c, dval + e * (k + 1), f, k, n);
                }
                grad_sb[io] = sum_base;
                grad_ss[io] = sum_spline;
            }
        }
    }
}

/* The exported kernels: k = 3 through a copy compiled for it, any other k through the general one. */
void kan_layer_basis(long S, long in, long B, long k, long n_intervals, const double *x, const double *shift,
                     const double *inv_h, const double *M, long *first, double *val, double *dval, double *base,
                     double *dbase) {
    if (k == 3)
        layer_basis(S, in, B, 3, n_intervals, x, shift, inv_h, M, first, val, dval, base, dbase);
    else
        layer_basis(S, in, B, k, n_intervals, x, shift, inv_h, M, first, val, dval, base, dbase);
}

void kan_layer_forward(long S, long in, long out, long B, long n, long k, const double *coef, const double *sb,
                       const double *ss, const long *first, const double *val, const double *base, double *y) {
    if (k == 3)
        layer_forward(S, in, out, B, n, 3, coef, sb, ss, first, val, base, y);
    else
        layer_forward(S, in, out, B, n, k, coef, sb, ss, first, val, base, y);
}

void kan_layer_backward(long S, long in, long out, long B, long n, long k, const double *coef, const double *sb,
                        const double *ss, const long *first, const double *val, const double *dval,
                        const double *base, const double *dbase, const double *grad_y, double *grad_coef,
                        double *grad_sb, double *grad_ss, double *grad_x) {
    if (k == 3)
        layer_backward(S, in, out, B, n, 3, coef, sb, ss, first, val, dval, base, dbase, grad_y, grad_coef, grad_sb,
                       grad_ss, grad_x);
    else
        layer_backward(S, in, out, B, n, k, coef, sb, ss, first, val, dval, base, dbase, grad_y, grad_coef, grad_sb,
                       grad_ss, grad_x);
}

/* One loss evaluation of a network of `depth` layers for S models: every layer's basis (the first
 * layer's only when `input_basis` is nonzero: it is kept while the training inputs and the grid stay)
 * and forward, each model's mean squared error, and the backward pass, in one call.
 *   dims: S, B, depth, then per layer: in, out, n, k, n_intervals
 *   ptrs: per layer LAYER_POINTERS pointers: x (its input: the training inputs, or the previous
 *         layer's y), coef, scale_base, scale_sp, shift, inv_h, M, first, val, dval, base, dbase, y,
 *         grad_coef, grad_scale_base, grad_scale_sp, grad_x (NULL for the first layer);
 *         then y_target, grad_out and losses (S). */
#define LAYER_POINTERS 17
void kan_mse_and_grad(const long *dims, void *const *ptrs, long input_basis) {
    long S = dims[0], B = dims[1], depth = dims[2];
    for (long l = 0; l < depth; l++) {
        const long *d = dims + 3 + 5 * l;
        void *const *p = ptrs + LAYER_POINTERS * l;
        if (l > 0 || input_basis)
            kan_layer_basis(S, d[0], B, d[3], d[4], p[0], p[4], p[5], p[6], p[7], p[8], l > 0 ? p[9] : 0, p[10],
                            l > 0 ? p[11] : 0);
        kan_layer_forward(S, d[0], d[1], B, d[2], d[3], p[1], p[2], p[3], p[7], p[8], p[10], p[12]);
    }
    const long *last = dims + 3 + 5 * (depth - 1);
    void *const *tail = ptrs + LAYER_POINTERS * depth;
    kan_mse(S, last[1] * B, ptrs[LAYER_POINTERS * (depth - 1) + 12], tail[0], tail[1], tail[2]);
    const double *grad_y = tail[1];
    for (long l = depth - 1; l >= 0; l--) {
        const long *d = dims + 3 + 5 * l;
        void *const *p = ptrs + LAYER_POINTERS * l;
        kan_layer_backward(S, d[0], d[1], B, d[2], d[3], p[1], p[2], p[3], p[7], p[8], p[9], p[10], p[11], grad_y,
                           p[13], p[14], p[15], l > 0 ? p[16] : 0);
        grad_y = p[16];
    }
}
