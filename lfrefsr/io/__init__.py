"""Input and output: image files, flow/disparity files, light-field layouts, video decoding, and the stores."""
