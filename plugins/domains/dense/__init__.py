"""The dense-prediction domain: pixel-wise tasks (segmentation, depth, normals, saliency,
keypoints, edges) on NYUv2, CityScapes, PASCAL-Context, Taskonomy or the procedural scenes."""
