"""The emulator's ``image.find_rects``: an approximation of MaixPy-v1's ``imlib_find_rects``
(``omv/img/apriltag.c``), built from what that C code does, with OpenCV doing the contour work.

Same as the board (read from the source):
- the image is turned to grayscale (luma), then thresholded in 4x4 tiles: each pixel is compared
  with the middle of the min/max over the 3x3 neighbouring tiles; tiles with a spread under 5
  take no part;
- a candidate is a convex quad of area >= 64 whose corner angles lie in 10-170 degrees;
- ``magnitude`` = the sum, over the 4 edges traced with Bresenham (both ends included, so each
  corner counts twice), of round(sqrt(gx^2 + gy^2)) from a 3x3 Sobel on the grayscale image; a
  quad is kept when magnitude >= threshold;
- the rect's box is the corners' bounding box with w = max_x - min_x (no +1); ``corners()``
  starts at the corner of smallest angle about the box centre and runs the other way round.

- boundary points are clustered by the pair of 4-connected black and white regions they
  separate (AprilTag's clustering); a cluster of 24 .. 3 x (2w + 2h) points is a candidate.

Different (an approximation): AprilTag's corner search (maxima of the line-fit error along the
cluster's points sorted by angle, the best 4 of up to 10) and its edge refinement are replaced
by a convex hull simplified to 4 vertices with ``approxPolyDP``, kept when the mean squared
line-fit error is <= 10 (``max_line_fit_mse``). Corner positions can differ by a pixel or two,
and a quad the board accepts or rejects may come out otherwise here. docs/card-in-frame.md gives the
locator's sensitivity to the threshold.
"""

from __future__ import annotations

import numpy as np


def _gray(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.int32)
    return ((a[..., 0] * 77 + a[..., 1] * 150 + a[..., 2] * 29) >> 8).astype(np.uint8)


def _tile_threshold(g: np.ndarray) -> np.ndarray:
    import cv2

    h, w = g.shape
    th, tw = -(-h // 4), -(-w // 4)
    pad = np.pad(g, ((0, th * 4 - h), (0, tw * 4 - w)), mode="edge").reshape(th, 4, tw, 4)
    mn, mx = pad.min(axis=(1, 3)), pad.max(axis=(1, 3))
    k = np.ones((3, 3), np.uint8)
    mn, mx = cv2.erode(mn, k), cv2.dilate(mx, k)
    mn = np.repeat(np.repeat(mn, 4, 0), 4, 1)[:h, :w].astype(np.int32)
    mx = np.repeat(np.repeat(mx, 4, 0), 4, 1)[:h, :w].astype(np.int32)
    out = np.where(g.astype(np.int32) > mn + (mx - mn) // 2, 255, 0).astype(np.uint8)
    out[(mx - mn) < 5] = 127
    return out


def _sobel_magnitude(g: np.ndarray) -> np.ndarray:
    import cv2

    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    return np.rint(np.sqrt(gx * gx + gy * gy)).astype(np.int64)


def _bresenham(x0: int, y0: int, x1: int, y1: int):
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        yield x0, y0
        if x0 == x1 and y0 == y1:
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


def _angles_ok(q: np.ndarray) -> bool:
    for i in range(4):
        a, b, c = q[i - 1], q[i], q[(i + 1) % 4]
        v1, v2 = a - b, c - b
        cos = float(np.dot(v1, v2) / max(1e-9, np.linalg.norm(v1) * np.linalg.norm(v2)))
        ang = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        if not 10 <= ang <= 170:
            return False
    return True


def _clusters(binary: np.ndarray) -> list[np.ndarray]:
    """Boundary points between black and white regions, grouped by the pair of 4-connected
    components they separate (AprilTag's clustering): one cluster per (black, white) pair."""
    import cv2

    nw, lw = cv2.connectedComponents((binary == 255).astype(np.uint8), connectivity=4)
    nb, lb = cv2.connectedComponents((binary == 0).astype(np.uint8), connectivity=4)
    lab = np.where(binary == 255, lw, np.where(binary == 0, lb + nw, 0)).astype(np.int64)
    white = binary == 255
    pts, keys = [], []
    h, w = binary.shape
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        # pixel (y, x) and its neighbour (y + dy, x + dx), for every x where both exist
        xa0, xa1 = (0, w - dx) if dx >= 0 else (-dx, w)
        a = lab[0 : h - dy, xa0:xa1]
        b = lab[dy:h, xa0 + dx : xa1 + dx]
        wa = white[0 : h - dy, xa0:xa1]
        edge = (a > 0) & (b > 0) & ((a > nw) != (b > nw))
        ys, xs = np.nonzero(edge)
        x0 = xs + xa0
        pts.append(np.stack([x0 + dx / 2.0, ys + dy / 2.0], 1))
        wid = np.where(wa[ys, xs], a[ys, xs], b[ys, xs])
        bid = np.where(wa[ys, xs], b[ys, xs], a[ys, xs])
        keys.append(wid * (nw + nb + 2) + bid)
    if not pts:
        return []
    p, k = np.concatenate(pts), np.concatenate(keys)
    order = np.argsort(k, kind="stable")
    p, k = p[order], k[order]
    cuts = np.flatnonzero(np.diff(k)) + 1
    return np.split(p, cuts)


def _mse_to_quad(pts: np.ndarray, q: np.ndarray) -> float:
    d = np.full(len(pts), np.inf)
    for i in range(4):
        a, b = q[i].astype(np.float64), q[(i + 1) % 4].astype(np.float64)
        ab = b - a
        t = np.clip(((pts - a) @ ab) / max(1e-9, ab @ ab), 0, 1)
        d = np.minimum(d, ((pts - (a + t[:, None] * ab)) ** 2).sum(1))
    return float(d.mean())


def _fit_quad(pts: np.ndarray) -> np.ndarray | None:
    """Four corners fitted to a cluster, or None when it is not a quad: a convex hull simplified
    to 4 vertices, kept when the mean squared distance of the cluster's points to its sides is
    <= 10 (AprilTag's ``max_line_fit_mse``), its area >= 64 and its angles within 10-170."""
    import cv2

    hull = cv2.convexHull(pts.astype(np.float32))
    peri = cv2.arcLength(hull, True)
    for eps in (0.02, 0.04, 0.06):
        q = cv2.approxPolyDP(hull, eps * peri, True).reshape(-1, 2)
        if len(q) == 4:
            break
    else:
        return None
    if cv2.contourArea(q) < 64 or not _angles_ok(q.astype(np.float64)):
        return None
    if _mse_to_quad(pts, q) > 10.0:
        return None
    return q


def find_rects(rgb: np.ndarray, roi: tuple[int, int, int, int], threshold: int) -> list[tuple]:
    """[(x, y, w, h, magnitude, corners)] in image coordinates."""
    x, y, w, h = roi
    g = _gray(rgb[y : y + h, x : x + w])
    binary = _tile_threshold(g)
    mag = _sobel_magnitude(g)
    quads = []
    for c in _clusters(binary):
        if not 24 <= len(c) <= 3 * (2 * w + 2 * h):
            continue
        q = _fit_quad(c)
        if q is not None:
            quads.append(np.rint(q).astype(np.int64))
    kept: list[np.ndarray] = []
    for q in sorted(quads, key=lambda q: tuple(q.flatten())):  # overlapping quads: keep one
        if any(_same(q, k) for k in kept):
            continue
        kept.append(q)
    out = []
    for q in kept:
        total = 0
        for i in range(4):
            (ax, ay), (bx, by) = q[i], q[(i + 1) % 4]
            for px, py in _bresenham(int(ax), int(ay), int(bx), int(by)):
                if 0 <= px < w and 0 <= py < h:
                    total += int(mag[py, px])
        if total < threshold:
            continue
        cx, cy = (q[:, 0].min() + q[:, 0].max()) / 2, (q[:, 1].min() + q[:, 1].max()) / 2
        order = np.argsort(np.arctan2(q[:, 1] - cy, q[:, 0] - cx))[::-1]
        qq = q[order] + np.array([x, y])
        x0, y0 = qq.min(axis=0)
        x1, y1 = qq.max(axis=0)
        out.append((int(x0), int(y0), int(x1 - x0), int(y1 - y0), total, [tuple(int(v) for v in p) for p in qq]))
    return out


def _same(a: np.ndarray, b: np.ndarray, tol: int = 4) -> bool:
    d = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2)  # corner-to-corner distances
    return bool((d.min(axis=1) <= tol).all())
