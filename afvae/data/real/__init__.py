"""The real-data wing: a dataset of photographs on disk -> the folder format training reads.

    dataset on disk  --readers-->    items: image file, identity, keypoints where the dataset ships them
                     --landmarks-->  68 detected landmarks for the items that have none (FAN or dlib)
                     --align-->      one similarity transform onto the canonical template: crop + keypoints
                     --prepare-->    OUT/images/, landmarks.csv, meta.json, sources.csv, rejects.csv: the
                                     folder format of ``afvae.data.datasets`` (``FolderFaces`` reads it)

``readers``    one reader per dataset layout (below), each returning a ``Source`` (one ``Item`` per image)
``landmarks``  the FAN / dlib landmark backends behind ``make_landmarker`` and ``detect_landmarks``
``align``      the canonical templates and the alignment of an image with its keypoints
``prepare``    the run that ties them together (detection cache, identity split, rejects, atomic outputs),
               and its command line: ``python -m afvae.data.real.prepare SOURCE --root ROOT --out OUT``

Only ``prepare`` imports the other three. This file imports nothing: it holds what ``--help`` shows (the
source names and their layouts), so that the command answers before numpy or torch is loaded.

Layouts (``ROOT`` is ``--root``):

``celeba``   torchvision's CelebA layout: ``ROOT/celeba/img_align_celeba/000001.jpg ...`` and
             ``ROOT/celeba/identity_CelebA.txt`` ("000001.jpg 2880" per line); ``ROOT`` may also be the
             ``celeba`` folder itself. Other CelebA files (``list_landmarks_align_celeba.txt``,
             ``list_eval_partition.txt``...) may be present and are not needed (its 5 landmarks are not
             the 68 we need: landmarks are detected). Licence: CelebA is for non-commercial research
             and educational use only (see its agreement); you must not redistribute the images.
``rafd``     ``ROOT/**/Rafd090_01_Caucasian_female_angry_frontal.jpg``: the Radboud Faces Database
             file names are ``Rafd{camera angle}_{subject id}_{ethnicity}_{gender}_{expression}_{gaze}``;
             identity = subject id, expression / gaze / angle kept as attributes. Licence: RaFD is
             granted on request for non-commercial scientific research; you must accept its terms of use
             (no redistribution; only the consented example images may appear in publications).
``multipie`` CMU Multi-PIE: ``ROOT/Multi-Pie/data/session01/multiview/001/01/05_1/001_01_01_051_00.png``
             (``session/multiview/subject/recording/camera/subject_session_recording_camera_flash.png``;
             ``ROOT`` may also be ``Multi-Pie/`` or ``Multi-Pie/data/``). Identity = subject; only the
             frontal camera ``05_1`` by default (``readers.multipie(root, cameras=None)`` takes all 15, each
             item with its camera's yaw label, ``readers.MULTIPIE_YAW``: 11_0 -90 ... 05_1 0 ... 24_0 +90).
             Licence: the Multi-PIE licence (purchased from CMU) — research use, no redistribution,
             publication of only the consented subjects' images.
``wflw``     ``ROOT/WFLW_images/0--Parade/0_Parade_marchingband_1_116.jpg ...`` and
             ``ROOT/WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{train,test}.txt``
             (196 coordinates, 4 box values, 6 attribute flags, image path per line; ``ROOT`` may also
             be the parent of ``WFLW/``). The 98 points become the 68 iBUG points with the standard
             WFLW -> 68 index map. Each annotated face is one item and its own identity. Licence: WFLW's
             annotations are for non-commercial research; its images come from WIDER FACE (under their
             own terms).
``300w``     ``ROOT/**/NAME.pts`` next to ``NAME.png``, ``NAME.jpg``, ``NAME.ppm`` (any format ``folder``
             reads; iBUG 300-W, also its afw / helen / lfpw / ibug parts): ``version: 1 / n_points: 68 /
             { x y ... }``, coordinates 1-based (Matlab), converted to 0-based. Identity = the image's
             relative path without extension.
             Licence: 300-W annotations are for non-commercial research only; the images keep their own
             licences.
``folder``   ``ROOT/**/*.jpg|png|...``: any images. Identity = the first sub-folder under ``ROOT`` (so
             ``ROOT/alice/1.jpg`` and ``ROOT/alice/x/2.png`` are one person), or the file stem for images
             directly in ``ROOT``. EXIF orientation is applied (phone photos); symlinks that lead nowhere
             are listed as rejects. Licence: yours to check.
``cats``     The CAT dataset (Zhang, Sun & Tang 2008): ``ROOT/**/00000001_000.jpg`` with
             ``00000001_000.jpg.cat`` beside it: "9 x1 y1 ... x9 y9" (left eye, right eye, mouth, left ear
             x3, right ear x3) -> schema ``cat9``. Identity = file stem. Licence: the CAT dataset's images
             come from flickr.com under their authors' terms; research use.
``keypoints`` Any images with a table of keypoints, for any schema (``hand21``, ``cat9``, ``face68``):
             ``ROOT/keypoints.csv`` with columns ``file, [identity,] x0, y0, ..., x{N-1}, y{N-1}`` (file
             relative to ``ROOT``), or ``ROOT/keypoints.json``: ``{"schema": "hand21", "items": [{"file":
             ..., "keypoints": [[x, y], ...], "identity": ...}, ...]}`` (or just the list of items); the
             schema comes from ``--schema`` or the JSON. Identity = the ``identity`` column, else the file
             stem. Licence: that of your data.
"""

SOURCES = ("celeba", "rafd", "multipie", "wflw", "300w", "folder", "cats", "keypoints")  # readers.READERS' names
