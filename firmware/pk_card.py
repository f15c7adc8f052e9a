# pokedex-k210: find a card in the camera frame and the crop of its art window the classifier sees.
# MaixPy-v1 image API on the CPU (find_rects on a reduced copy of the frame); MicroPython 1.11
# syntax (no f-strings, no annotations). The card layout comes from pokedex.json ("card"), which
# the host writes from the one layout the training views and the benchmark also use.


def order_corners(pts):
    """[TL, TR, BR, BL] of four (x, y) points of a card held upright (rotation under 45 deg)."""
    p = sorted([(float(x), float(y)) for x, y in pts], key=lambda q: q[1])
    top = sorted(p[:2])
    bottom = sorted(p[2:])
    return [top[0], top[1], bottom[1], bottom[0]]


def _len(a, b):
    return ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5


def card_shape(c):
    """(width, height) in pixels of the quad c = [TL, TR, BR, BL]."""
    w = (_len(c[0], c[1]) + _len(c[3], c[2])) / 2
    h = (_len(c[0], c[3]) + _len(c[1], c[2])) / 2
    return w, h


def squareness(c):
    """(the largest |cos| of c's four corner angles, the larger ratio of its opposite sides): 0 and 1
    for a rectangle; a tilted card seen in perspective stays near them, a quad that find_rects
    pieced together from glare, shadows or text lines seldom does."""
    cos = 0.0
    for i in range(4):
        p = c[i]
        a = c[i - 1]
        b = c[(i + 1) % 4]
        ax = a[0] - p[0]
        ay = a[1] - p[1]
        bx = b[0] - p[0]
        by = b[1] - p[1]
        n = ((ax * ax + ay * ay) * (bx * bx + by * by)) ** 0.5
        if n <= 0:
            return 1.0, 1e9
        cos = max(cos, abs(ax * bx + ay * by) / n)
    s = [_len(c[i], c[(i + 1) % 4]) for i in range(4)]
    if min(s) <= 0:
        return 1.0, 1e9
    return cos, max(max(s[0], s[2]) / min(s[0], s[2]), max(s[1], s[3]) / min(s[1], s[3]))


def card_from_art(q, cfg):
    """The card [TL, TR, BR, BL] whose art window is the quad q (bilinear, extrapolated)."""
    x0, y0, x1, y1 = cfg["art"]
    out = []
    for u, v in ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)):
        sx = (u - x0) / (x1 - x0)
        ty = (v - y0) / (y1 - y0)
        out.append(_lerp(_lerp(q[0], q[1], sx), _lerp(q[3], q[2], sx), ty))
    return out


def _inside(c, fw, fh, tol):
    """Whether every corner of c is in the frame, give or take tol of its width / height."""
    for x, y in c:
        if x < -tol * fw or y < -tol * fh or x > (1 + tol) * fw or y > (1 + tol) * fh:
            return False
    return True


def blob_quad(b):
    """The rectangle [TL, TR, BR, BL] a blob of a card outlines, from what MaixPy-v1's blob
    gives (its box and the rotation of its major axis): a rectangle of sides L (along the axis)
    and W, turned by t, has a box of L|cos t| + W|sin t| by L|sin t| + W|cos t|. Returns (corners,
    the share of the rectangle the blob fills), or None near 45 degrees, where the box cannot tell
    the sides apart."""
    import math

    t = b.rotation()
    c = abs(math.cos(t))
    sn = abs(math.sin(t))
    det = c * c - sn * sn
    if abs(det) < 0.3:
        return None
    bw = b.w() + 1.0  # imlib's blob box is one pixel short of the extent
    bh = b.h() + 1.0
    L = (bw * c - bh * sn) / det
    W = (bh * c - bw * sn) / det
    if L < 2 or W < 2:
        return None
    x = b.x() + bw / 2.0
    y = b.y() + bh / 2.0
    ux = math.cos(t) * L / 2
    uy = math.sin(t) * L / 2
    vx = -math.sin(t) * W / 2
    vy = math.cos(t) * W / 2
    return ((x - ux - vx, y - uy - vy), (x + ux - vx, y + uy - vy), (x + ux + vx, y + uy + vy),
            (x - ux + vx, y - uy + vy)), b.pixels() / (L * W)


def _card_like(quads, s, fh, cfg, best, art=False, fw=0, texture=None):
    """The largest card-shaped quad among quads (lists of 4 corners, scaled by s), or best. With
    art, the quads shaped like the art window (a card's aspect times the window's) stand for the
    cards around them instead. With texture = (image, its scale), a quad whose art window is flat
    there (L stdev under cfg["texture"]) is passed over."""
    lo, hi = cfg["aspect"]
    max_cos = cfg["max_cos"]
    max_ratio = cfg["side_ratio"]
    if art:
        x0, y0, x1, y1 = cfg["art"]
        f = (y1 - y0) / (x1 - x0)
    area = 0.0
    if best is not None:
        w, h = card_shape(best)
        area = w * h
    for q in quads:
        c = order_corners(q)
        w, h = card_shape(c)
        if w < 2 or h < 2:
            continue
        if max_cos < 1.0 or max_ratio < 1e9:
            q_cos, q_ratio = squareness(c)
            if q_cos > max_cos or q_ratio > max_ratio:
                continue
        a = h / w
        if art:
            if a < lo * f or a > hi * f:
                continue
            c = card_from_art(c, cfg)
            if not _inside([(x * s, y * s) for x, y in c], fw, fh, cfg["art_outside"]):
                continue
            w, h = card_shape(c)
            a = h / w
        if a < lo or a > hi or h * s < cfg["min_height"] * fh:
            continue
        if w * h * s * s > area:
            if texture is not None and not textured(texture[0], [(x * s / texture[1], y * s / texture[1]) for x, y in c], cfg):
                continue
            area = w * h * s * s
            best = [(x * s, y * s) for x, y in c]
    return best


def textured(img, c, cfg):
    """Whether card c (corners in img's pixels) shows a picture in its art window: a blank sheet,
    a glare spot or a patch of desk does not. Measured as the L stdev (at least
    cfg["texture"]) of the box around the middle half of the window, which stays on the
    card when it is tilted."""
    q = art_quad(c, cfg)
    mx = (q[0][0] + q[1][0] + q[2][0] + q[3][0]) / 4
    my = (q[0][1] + q[1][1] + q[2][1] + q[3][1]) / 4
    xs = [mx + (p[0] - mx) * 0.5 for p in q]
    ys = [my + (p[1] - my) * 0.5 for p in q]
    roi = clip_box(min(xs), min(ys), max(xs), max(ys), img.width(), img.height(), 2)
    return img.get_statistics(roi=roi).l_stdev() >= cfg["texture"]


def desk_threshold(img, cfg):
    """A LAB threshold (l_lo, l_hi, a_lo, a_hi, b_lo, b_hi) for the desk: the median over the
    frame's four border strips of their means, widened by k standard deviations plus a margin."""
    w = img.width()
    h = img.height()
    m = cfg["strip"]
    rois = ((0, 0, w, m), (0, h - m, w, m), (0, 0, m, h), (w - m, 0, m, h))
    st = [img.get_statistics(roi=r) for r in rois]
    k = cfg["desk_k"]
    pad = cfg["desk_margin"]
    out = []
    for mean, sd in ((lambda t: t.l_mean(), lambda t: t.l_stdev()), (lambda t: t.a_mean(), lambda t: t.a_stdev()),
                     (lambda t: t.b_mean(), lambda t: t.b_stdev())):
        mu = sorted([mean(t) for t in st])
        sg = sorted([sd(t) for t in st])
        c = (mu[1] + mu[2]) / 2
        d = k * (sg[1] + sg[2]) / 2 + pad
        out.append(int(c - d))
        out.append(int(c + d + 0.999))
    return tuple(out)


def find_card(img, cfg):
    """[TL, TR, BR, BL] in frame pixels of the most card-like quad, or None.

    Looks at a copy reduced by cfg["scale"] (find_rects' cost grows with the pixel count):
    the edges of a lightly blurred copy, and — reduced by cfg["mask_scale"] more — the outline of
    what is not the desk (pixels outside the border strips' colour range, as a binary image). When
    neither finds a card, the desk is judged by its colour alone (L left free: uneven light and
    vignetting spread the desk's lightness far more than its hue), once per width in
    cfg["chroma_k"] until one finds it. A candidate must have a card's aspect (height / width
    within cfg["aspect"]) and be at least cfg["min_height"] of the frame tall; the largest wins.
    Last (cfg["art_look"]), a card whose outline is lost on a desk of its own colour is found by
    its art window: a quad of any look shaped like the window stands for the card around it, if
    that card lies in the frame (within cfg["art_outside"] of its size). If still nothing passed,
    cfg["loose"] (a dict of the settings above, looser) takes the largest quad of any look that
    passes them and shows a picture in its art window: the coarse masks bend a real card's corners
    (glare, a card cut by the frame's edge) past the strict shape test."""
    s = cfg["scale"]
    fw = img.width()
    fh = img.height()
    small = img.resize(fw // s, fh // s) if s > 1 else img.copy()
    blur = small.copy()
    blur.gaussian(1)
    rects = [r.corners() for r in blur.find_rects(threshold=cfg["rect_threshold"])]
    del blur
    best = _card_like(rects, s, fh, cfg, None)
    k = cfg["mask_scale"]  # the mask passes work on a further reduced copy: a clean outline needs few pixels
    tiny = small.resize(small.width() // k, small.height() // k) if k > 1 else small
    del small
    looks = [desk_threshold(tiny, cfg)]
    for ck in cfg["chroma_k"]:
        c = dict(cfg)
        c["desk_k"] = ck
        t = desk_threshold(tiny, c)
        looks.append((0, 100, t[2], t[3], t[4], t[5]))
    mthr = cfg["mask_threshold"] // k
    mh = cfg["min_height"] * fh / (s * k)  # the smallest card, in tiny's pixels
    mpix = int(mh * mh / cfg["aspect"][1] * 0.5)
    seen = [(rects, s)]  # every look's quads (and textured blobs), for the art look and the loose pass
    for i in range(len(looks)):
        if i > 0 and best is not None:
            break
        blobs = []
        if cfg["blob_look"] and i >= cfg["blob_from"]:
            dmin = cfg["blob_density"]
            tex = cfg["texture"]
            for b in tiny.find_blobs([looks[i]], invert=True, x_stride=1, area_threshold=mpix, pixels_threshold=mpix):
                q = blob_quad(b)
                if q is None or q[1] < dmin:
                    continue
                if tex and not textured(tiny, order_corners(q[0]), cfg):
                    continue
                blobs.append(q[0])
        mask = tiny.copy()  # tiny stays for the next look and the loose pass's texture test
        mask.binary([looks[i]], invert=True)
        mrects = [r.corners() for r in mask.find_rects(threshold=mthr)]
        del mask
        best = _card_like(mrects, s * k, fh, cfg, best)
        if best is None and blobs:
            best = _card_like(blobs, s * k, fh, cfg, best)
        seen.append((mrects, s * k))
        if blobs:
            seen.append((blobs, s * k))
    if best is None and cfg["art_look"]:
        for rs, sc in seen[:1] if cfg["art_look"] == "edges" else seen:
            best = _card_like(rs, sc, fh, cfg, best, True, fw)
    loose = cfg["loose"]
    if best is None and loose:
        c = dict(cfg)
        c.update(loose)
        for rs, sc in seen:
            best = _card_like(rs, sc, fh, c, best, texture=(tiny, s * k))
    return best


def _lerp(a, b, t):
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def art_quad(c, cfg):
    """The art window of card c (TL, TR, BR, BL), grown by cfg["margin"] per side."""
    x0, y0, x1, y1 = cfg["art"]
    m = cfg["margin"]
    mx = (x1 - x0) * m
    my = (y1 - y0) * m
    out = []
    for u, v in ((x0 - mx, y0 - my), (x1 + mx, y0 - my), (x1 + mx, y1 + my), (x0 - mx, y1 + my)):
        out.append(_lerp(_lerp(c[0], c[1], u), _lerp(c[3], c[2], u), v))
    return out


def clip_box(x0, y0, x1, y1, fw, fh, min_side=8):
    """An integer (x, y, w, h) inside the frame, at least min_side on each side."""
    x0 = max(0, min(fw - min_side, int(x0)))
    y0 = max(0, min(fh - min_side, int(y0)))
    x1 = max(x0 + min_side, min(fw, int(x1 + 0.999)))
    y1 = max(y0 + min_side, min(fh, int(y1 + 0.999)))
    return (x0, y0, x1 - x0, y1 - y0)


def art_box(c, cfg, fw, fh):
    """The axis-aligned box around the art window of card c: what the classifier is fed."""
    q = art_quad(c, cfg)
    xs = [p[0] for p in q]
    ys = [p[1] for p in q]
    return clip_box(min(xs), min(ys), max(xs), max(ys), fw, fh)


def centre_box(fw, fh, side):
    side = min(side, fw, fh)
    return ((fw - side) // 2, (fh - side) // 2, side, side)
