"""The media layer: everything that touches pixels, sound or the ffmpeg binary.

Shared by the render stage (probing a downloaded clip, the last frame of an upstream clip,
the preview animatic) and the stitch stage (the cutter and its seams), so neither imports
the other:

* :mod:`storyboard.media.ffmpeg` locates the ffmpeg binary imageio-ffmpeg ships and runs it,
  always with a deadline (the one place that does);
* :mod:`storyboard.media.probe` reads a clip's length, size, rate, audio and colour, and
  writes its last frame;
* :mod:`storyboard.media.footage` says how much of an extension clip is new footage;
* :mod:`storyboard.media.encoding` is the one encoding of the cut's pieces and seams;
* :mod:`storyboard.media.text` lays out text: title cards, captions;
* :mod:`storyboard.media.animatic` draws the preview backend's animatic.

Failures raise :class:`~storyboard.errors.MediaError`. Importing this package imports
nothing heavy; numpy, Pillow and moviepy come with the modules that draw.
"""
