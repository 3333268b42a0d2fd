//! The embed example's model: `sentence-transformers/all-MiniLM-L6-v2` on candle, the BERT
//! encoder, mean pooling over the attention mask and L2 normalisation, as sentence-transformers'
//! `Transformer → Pooling(mean) → Normalize` does. A package of its own so that candle is built
//! only for this example, not for every example of the repository.

pub mod api;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// The model's name in outputs.
pub const NAME: &str = "sentence-transformers/all-MiniLM-L6-v2";
/// The length of its vectors.
pub const DIMENSIONS: usize = 384;
/// Its window (sentence-transformers' `max_seq_length`): longer texts are cut to this many
/// tokens, `[CLS]` and `[SEP]` included.
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass: a job's texts are sorted by length and run in chunks of this many,
/// so a long text pads only its neighbours in length.
const CHUNK: usize = 32;

/// `MODEL_DIR`, else where `scripts/fetch-model.sh` puts the model.
pub fn model_dir() -> PathBuf {
    std::env::var_os("MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../target/models/all-MiniLM-L6-v2"
            )
            .into()
        })
}

/// Where the model runs: `EMBED_DEVICE` says (`cpu`, `cuda`, `cuda:N`); unset, the first GPU
/// in a build with candle's CUDA backend (`RUSTFLAGS="--cfg embed_cuda"`), else the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The CPU, one thread per model call unless `RAYON_NUM_THREADS` says otherwise.
    Cpu,
    /// The CUDA device of this ordinal (as `CUDA_VISIBLE_DEVICES` numbers them).
    Cuda(usize),
}

/// Whether this build has candle's CUDA backend.
pub const CUDA_BUILD: bool = cfg!(embed_cuda);

impl Placement {
    /// `EMBED_DEVICE`, or the build's default.
    pub fn from_env() -> anyhow::Result<Placement> {
        Placement::parse(std::env::var("EMBED_DEVICE").ok().as_deref())
    }

    /// The placement a value of `EMBED_DEVICE` names (`None` or empty: the build's default).
    pub fn parse(value: Option<&str>) -> anyhow::Result<Placement> {
        let placement = match value.map(str::trim) {
            None | Some("") if CUDA_BUILD => Placement::Cuda(0),
            None | Some("") | Some("cpu") => Placement::Cpu,
            Some("cuda") => Placement::Cuda(0),
            Some(other) => match other.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(ordinal)) => Placement::Cuda(ordinal),
                _ => anyhow::bail!(
                    "EMBED_DEVICE={other:?} is not a device: use `cpu`, `cuda` or `cuda:N` \
                     (N the GPU's number, from 0)"
                ),
            },
        };
        if matches!(placement, Placement::Cuda(_)) && !CUDA_BUILD {
            anyhow::bail!(
                "EMBED_DEVICE asks for a GPU, but this worker was built without CUDA: build it \
                 with RUSTFLAGS=\"--cfg embed_cuda\" on a machine with the CUDA toolkit \
                 (docker/Dockerfile.cuda shows how), or set EMBED_DEVICE=cpu"
            );
        }
        Ok(placement)
    }

    /// How many model calls should run at once: one per core on the CPU (each on one
    /// thread), one on a GPU (it runs one call at a time anyway).
    pub fn concurrency(self) -> usize {
        match self {
            Placement::Cpu => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Placement::Cuda(_) => 1,
        }
    }

    fn device(self) -> anyhow::Result<Device> {
        match self {
            Placement::Cpu => Ok(Device::Cpu),
            Placement::Cuda(ordinal) => Device::new_cuda(ordinal).with_context(|| {
                format!(
                    "opening CUDA device {ordinal} (is a GPU visible to the container? \
                     EMBED_DEVICE=cpu runs on the CPU)"
                )
            }),
        }
    }
}

/// One text's embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// Unit length, [`DIMENSIONS`] long.
    pub vector: Vec<f32>,
    /// Tokens the model saw, `[CLS]` and `[SEP]` included.
    pub tokens: usize,
    /// The text was cut to [`MAX_TOKENS`].
    pub truncated: bool,
}

/// The loaded model and its tokenizer.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("device", &self.device)
            .finish()
    }
}

impl Embedder {
    /// Load the model directory of the sentence-transformers checkpoint (`config.json`,
    /// `tokenizer.json`, `model.safetensors`) onto the device `EMBED_DEVICE` names.
    pub fn load(dir: &Path) -> anyhow::Result<Embedder> {
        Embedder::load_on(dir, Placement::from_env()?)
    }

    /// [`Embedder::load`] onto a device of your choosing.
    pub fn load_on(dir: &Path, placement: Placement) -> anyhow::Result<Embedder> {
        let file = |name: &str| {
            let path = dir.join(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(anyhow::anyhow!(
                    "{} is missing: fetch the model with `scripts/fetch-model.sh` (it goes to \
                     target/models/), or point MODEL_DIR at a directory holding all-MiniLM-L6-v2",
                    path.display()
                ))
            }
        };
        let config: Config = serde_json::from_str(
            &std::fs::read_to_string(file("config.json")?).context("reading config.json")?,
        )
        .context("config.json is not a BERT configuration")?;
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json")?)
            .map_err(|e| anyhow::anyhow!("tokenizer.json: {e}"))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| anyhow::anyhow!("tokenizer truncation: {e}"))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..PaddingParams::default()
        }));
        let device = placement.device()?;
        let weights = file("model.safetensors")?;
        // SAFETY: the weights file is memory-mapped read-only and must not change while the
        // worker runs; model files in an image or on a volume are written before it starts.
        #[allow(unsafe_code)]
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .with_context(|| format!("loading {}", weights.display()))?;
        let model = BertModel::load(vb, &config).context("building the BERT model")?;
        Ok(Embedder {
            model,
            tokenizer,
            device,
        })
    }

    /// Embed `texts`, in order.
    pub fn embed(&self, texts: &[String]) -> anyhow::Result<Vec<Embedding>> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out: Vec<Option<Embedding>> = vec![None; texts.len()];
        for chunk in order.chunks(CHUNK) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            for (&i, embedding) in chunk.iter().zip(self.embed_batch(&batch)?) {
                out[i] = Some(embedding);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// One forward pass over `texts`, padded to the longest.
    fn embed_batch(&self, texts: &[&str]) -> anyhow::Result<Vec<Embedding>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        let len = encodings.first().map_or(0, |e| e.get_ids().len());
        let n = encodings.len();
        let mut ids = Vec::with_capacity(n * len);
        let mut mask = Vec::with_capacity(n * len);
        for encoding in &encodings {
            ids.extend_from_slice(encoding.get_ids());
            mask.extend_from_slice(encoding.get_attention_mask());
        }
        let ids = Tensor::from_vec(ids, (n, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (n, len), &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        // Mean over the real tokens, then unit length (eps as torch's F.normalize).
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f32::MAX)?;
        let vectors = mean.broadcast_div(&norms)?.to_vec2::<f32>()?;
        Ok(vectors
            .into_iter()
            .zip(&encodings)
            .map(|(vector, encoding)| Embedding {
                vector,
                tokens: encoding
                    .get_attention_mask()
                    .iter()
                    .filter(|&&m| m == 1)
                    .count(),
                truncated: !encoding.get_overflowing().is_empty(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embed_device_names_a_placement_or_says_what_is_wrong() {
        assert_eq!(Placement::parse(Some("cpu")).unwrap(), Placement::Cpu);
        assert_eq!(Placement::parse(Some(" cpu ")).unwrap(), Placement::Cpu);
        let default = if CUDA_BUILD {
            Placement::Cuda(0)
        } else {
            Placement::Cpu
        };
        assert_eq!(Placement::parse(None).unwrap(), default);
        assert_eq!(Placement::parse(Some("")).unwrap(), default);
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", "CPU0"] {
            let message = Placement::parse(Some(bad)).unwrap_err().to_string();
            assert!(
                message.contains("use `cpu`, `cuda` or `cuda:N`"),
                "{bad}: {message}"
            );
        }
        for gpu in ["cuda", "cuda:1"] {
            match (Placement::parse(Some(gpu)), CUDA_BUILD) {
                (Ok(placement), true) => assert!(matches!(placement, Placement::Cuda(_))),
                (Err(e), false) => assert!(e.to_string().contains("--cfg embed_cuda"), "{e}"),
                (other, cuda) => panic!("{gpu} in a build with CUDA {cuda}: {other:?}"),
            }
        }
        assert_eq!(
            Placement::parse(Some("cuda:3")).ok(),
            CUDA_BUILD.then_some(Placement::Cuda(3))
        );
        assert_eq!(Placement::Cuda(0).concurrency(), 1);
        assert!(Placement::Cpu.concurrency() >= 1);
    }
}
