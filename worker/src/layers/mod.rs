//! The layers the UNet, the VAE and the text encoders are built from where candle's are slow on the CPU:
//! convolution, group norm (with its SiLU), the resnet block made of them, the dense layer and GEGLU's gate. Each runs our kernel on the CPU in f32 and candle's ops
//! elsewhere, so CUDA and half precision are unchanged.

mod conv;
mod geglu;
mod linear;
mod norm;
mod resnet;

pub use conv::Conv2d;
pub use geglu::geglu;
pub use linear::Linear;
pub use norm::GroupNorm;
pub use resnet::ResnetBlock;
