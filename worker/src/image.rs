//! Decoded images to 8-bit RGB and PNG files that carry how they were made.

use candle_core::{DType, Tensor};

use crate::error::PipelineError;

/// An 8-bit RGB image, rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    /// From one `(1, 3, h, w)` or `(3, h, w)` tensor in [0, 1], rounded as the reference's `numpy_to_pil`.
    pub fn from_tensor(image: &Tensor) -> Result<Self, PipelineError> {
        let image = match image.rank() {
            4 if image.dim(0)? == 1 => image.squeeze(0)?,
            3 => image.clone(),
            _ => {
                return Err(PipelineError::InvalidRequest(format!(
                    "an image tensor is (1, 3, h, w) or (3, h, w), not {:?}",
                    image.dims()
                )));
            }
        };
        let (c, height, width) = image.dims3()?;
        if c != 3 {
            return Err(PipelineError::InvalidRequest(format!("an image has 3 channels, not {c}")));
        }
        let values = image.to_dtype(DType::F32)?.permute((1, 2, 0))?.flatten_all()?.to_vec1::<f32>()?;
        let pixels = values.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round_ties_even() as u8).collect();
        Ok(Self { width, height, pixels })
    }

    /// PNG bytes with each `(keyword, text)` as an international text chunk (prompts are not Latin-1).
    pub fn to_png(&self, text: &[(String, String)]) -> Result<Vec<u8>, PipelineError> {
        let mut out = Vec::new();
        let encode_error = |e: png::EncodingError| PipelineError::InvalidRequest(format!("png encoding: {e}"));
        let side =
            |v: usize| u32::try_from(v).map_err(|_| PipelineError::InvalidRequest(format!("a PNG side of {v} pixels")));
        let (width, height) = (side(self.width)?, side(self.height)?);
        {
            let mut encoder = png::Encoder::new(&mut out, width, height);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            for (keyword, value) in text {
                encoder.add_itxt_chunk(keyword.clone(), value.clone()).map_err(encode_error)?;
            }
            let mut writer = encoder.write_header().map_err(encode_error)?;
            writer.write_image_data(&self.pixels).map_err(encode_error)?;
            writer.finish().map_err(encode_error)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn rounds_like_the_reference_and_keeps_text_chunks() {
        let t = Tensor::from_vec(vec![0.0f32, 1.0, 0.5, 0.002, 0.998, 0.25], (3, 1, 2), &Device::Cpu).unwrap();
        let img = RgbImage::from_tensor(&t).unwrap();
        assert_eq!((img.width, img.height), (2, 1));
        // Channel-last: pixel 0 = (r0, g0, b0).
        assert_eq!(img.pixels, vec![0, 128, 254, 255, 1, 64]);
        let png = img.to_png(&[("prompt".into(), "château ✓".into())]).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        let chunk = &reader.info().utf8_text[0];
        assert_eq!(chunk.keyword, "prompt");
        assert_eq!(chunk.get_text().unwrap(), "château ✓");
    }

    #[test]
    fn a_wrong_shape_is_an_error() {
        let t = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(RgbImage::from_tensor(&t).is_err());
    }
}
