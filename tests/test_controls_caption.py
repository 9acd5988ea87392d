"""The static fallback of every `plots.Controls` app (the PNG or HTML a reader sees where no kernel runs) names the
control values it was drawn with (issue 25)."""
import base64
import io

import ipywidgets as W
import numpy as np
from PIL import Image

from srflow_nb import plots


def _bundle_png(c) -> bytes: return base64.b64decode(c._repr_mimebundle_()["image/png"])


def test_png_fallback_is_captioned_with_the_drawn_values():
    df = plots.fake_evaluation()
    c = plots.Controls(lambda temperature, image, seed: plots.temperature_curves(df, metrics=["psnr"], marker={"temperature": temperature}),
                       {"temperature": W.FloatSlider(value=0.9, min=0, max=1, step=0.1), "image": W.Dropdown(options=["baboon", "chelsea"]),
                        "seed": W.IntSlider(value=0)})
    png = _bundle_png(c)
    assert c.caption() == "drawn with temperature = 0.9, image = baboon, seed = 0"
    assert plots.png_text(png)[plots.CAPTION_KEY] == c.caption()
    fig_h = Image.open(io.BytesIO(c.pngs[0])).height
    im = Image.open(io.BytesIO(png)).convert("RGB")
    assert im.height > fig_h                                               # a band under the figure ...
    assert np.asarray(im.convert("L"))[fig_h:].min() < 128                 # ... with the caption written in it
    assert np.array_equal(np.asarray(im), np.asarray(Image.open(io.BytesIO(plots.stack_png([c.pngs[0], plots.caption_png(c.caption(), im.width)]))).convert("RGB")))
    c.set(temperature=0.3, image="chelsea")
    assert plots.png_text(_bundle_png(c))[plots.CAPTION_KEY] == "drawn with temperature = 0.3, image = chelsea, seed = 0"


def test_caption_names_the_picture_shown_after_a_failed_draw_and_tables():
    def draw(n):
        if n > 1: raise ValueError("boom")
        return plots.best_of_n(plots.fake_evaluation(), temperature=0.8)
    c = plots.Controls(draw, {"n": W.IntSlider(value=1, min=1, max=3)})
    assert c._repr_mimebundle_()["text/html"].endswith('<p class="srflow-caption"><em>drawn with n = 1</em></p>')
    c.controls["n"].value = 2                                              # fails: the table of n = 1 stays, and so does its caption
    assert c.error and "drawn with n = 1" in c._repr_mimebundle_()["text/html"]


def test_palette_fallback_keeps_the_caption():
    c = plots.Controls(lambda k: plots.perception_distortion(plots.fake_evaluation()), {"k": W.IntSlider(value=2)}, static_colors=32)
    im = Image.open(io.BytesIO(_bundle_png(c)))
    assert im.mode == "P" and im.text[plots.CAPTION_KEY] == "drawn with k = 2"
