//! Compression of a context's stored JSON with zstd, optionally with a trained dictionary.
//!
//! The method is recorded per row in `compression_method` as text: `zstd-3`, `zstd-3-dict-<id>`
//! (the dictionary's zstd id, which is also written in each frame), or `none` when compressing
//! would not save a byte (a tiny context). `compression_ratio` is original bytes over stored bytes
//! (4.0: four times smaller).

use std::fmt;
use std::str::FromStr;

use crate::Invalid;

/// The level used unless configured otherwise. Chosen from `examples/context_measure.rs` on 1,000
/// generated contexts of 1k–100k tokens (85 MB of messages JSON, 2 shared cores): ratio 4.35 at
/// level 1, 4.57 at 3, 4.84 at 6, 4.99 at 9, 5.09 at 12, 5.40 at 19, with compression at about
/// 100–230 MB/s for levels 1–3, 20–40 MB/s for 6–9, under 10 MB/s from 12 and well under 1 MB/s
/// at 19 (decompression 600–1000 MB/s at every level). Level 3 keeps 95 % of level 9's ratio at
/// several times its speed; an offload request pays compression synchronously (a 100k-token
/// context is about 0.5 MB: a few ms at level 3, about 1 s at level 19).
///
/// A dictionary trained on 2,000 other small contexts lifted level 3's ratio from 2.75 to 5.01
/// for contexts under 2k tokens and from 4.80 to 5.11 above 20k; the generated corpus draws on
/// a small vocabulary, so real transcripts will gain less (the JSON skeleton of messages and
/// tool calls is what any dictionary learns).
pub const DEFAULT_LEVEL: i32 = 3;

/// The levels zstd accepts here (negative "fast" levels are not used).
pub const LEVELS: std::ops::RangeInclusive<i32> = 1..=22;

#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    #[error("zstd level {0} is outside 1..=22")]
    Level(i32),
    #[error("{method} needs dictionary {needed}, {given}")]
    Dictionary {
        method: String,
        needed: u32,
        given: String,
    },
    #[error("not a zstd dictionary with an id")]
    NotADictionary,
    #[error("decompressed {got} bytes, expected {expected}")]
    Size { got: usize, expected: usize },
    #[error("zstd: {0}")]
    Zstd(#[from] std::io::Error),
}

/// How a row's bytes were stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompressionMethod {
    /// Stored as sent.
    None,
    Zstd {
        level: i32,
        dictionary: Option<u32>,
    },
}

impl fmt::Display for CompressionMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressionMethod::None => f.write_str("none"),
            CompressionMethod::Zstd {
                level,
                dictionary: None,
            } => write!(f, "zstd-{level}"),
            CompressionMethod::Zstd {
                level,
                dictionary: Some(id),
            } => write!(f, "zstd-{level}-dict-{id}"),
        }
    }
}

impl FromStr for CompressionMethod {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Invalid> {
        let bad = || Invalid::new("compression_method", format!("unknown method {s:?}"));
        if s == "none" {
            return Ok(CompressionMethod::None);
        }
        let rest = s.strip_prefix("zstd-").ok_or_else(bad)?;
        let (level, dictionary) = match rest.split_once("-dict-") {
            Some((level, id)) => (level, Some(id.parse::<u32>().map_err(|_| bad())?)),
            None => (rest, None),
        };
        let level: i32 = level.parse().map_err(|_| bad())?;
        if !LEVELS.contains(&level) || dictionary == Some(0) {
            return Err(bad());
        }
        Ok(CompressionMethod::Zstd { level, dictionary })
    }
}

/// A zstd dictionary trained on sample contexts; its id (from its header) names it in methods.
/// Holds the dictionary digested for decompression, so decompressing many rows with it is cheap.
pub struct Dictionary {
    id: u32,
    bytes: Vec<u8>,
    decoder: zstd::dict::DecoderDictionary<'static>,
}

impl fmt::Debug for Dictionary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dictionary")
            .field("id", &self.id)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Dictionary {
    /// Trains a dictionary of at most `max_bytes` on `samples` (zstd's advice: a few thousand
    /// samples, about 100 times the dictionary's size in total).
    pub fn train<S: AsRef<[u8]>>(samples: &[S], max_bytes: usize) -> Result<Self, CompressError> {
        Self::from_bytes(zstd::dict::from_samples(samples, max_bytes)?)
    }

    /// A stored dictionary.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, CompressError> {
        let id =
            zstd::zstd_safe::get_dict_id_from_dict(&bytes).ok_or(CompressError::NotADictionary)?;
        let decoder = zstd::dict::DecoderDictionary::try_copy(&bytes)?;
        Ok(Self {
            id: id.get(),
            bytes,
            decoder,
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Stored bytes and how they were made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressed {
    pub bytes: Vec<u8>,
    pub method: CompressionMethod,
    pub original_bytes: usize,
}

impl Compressed {
    pub fn stored_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// Original bytes over stored bytes; 1.0 for an empty input.
    pub fn ratio(&self) -> f64 {
        if self.bytes.is_empty() {
            1.0
        } else {
            self.original_bytes as f64 / self.bytes.len() as f64
        }
    }
}

/// A level and an optional dictionary, prepared once (digesting a 64 KiB dictionary costs more
/// than compressing a small context with it) and shared by all requests: `Send + Sync`.
pub struct Compressor {
    level: i32,
    dictionary: Option<(u32, zstd::dict::EncoderDictionary<'static>)>,
}

impl fmt::Debug for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor")
            .field("method", &self.method())
            .finish()
    }
}

impl Compressor {
    pub fn new(level: i32, dictionary: Option<&Dictionary>) -> Result<Self, CompressError> {
        if !LEVELS.contains(&level) {
            return Err(CompressError::Level(level));
        }
        let dictionary = dictionary
            .map(|d| zstd::dict::EncoderDictionary::try_copy(&d.bytes, level).map(|e| (d.id, e)))
            .transpose()?;
        Ok(Self { level, dictionary })
    }

    /// The method of what this compressor writes (when compression pays).
    pub fn method(&self) -> CompressionMethod {
        CompressionMethod::Zstd {
            level: self.level,
            dictionary: self.dictionary.as_ref().map(|(id, _)| *id),
        }
    }

    /// Compresses `data`; keeps it as is (`none`) when compression would not make it smaller.
    pub fn compress(&self, data: &[u8]) -> Result<Compressed, CompressError> {
        let bytes = match &self.dictionary {
            Some((_, d)) => zstd::bulk::Compressor::with_prepared_dictionary(d)?.compress(data)?,
            None => zstd::bulk::compress(data, self.level)?,
        };
        if bytes.len() >= data.len() {
            return Ok(Compressed {
                bytes: data.to_vec(),
                method: CompressionMethod::None,
                original_bytes: data.len(),
            });
        }
        Ok(Compressed {
            bytes,
            method: self.method(),
            original_bytes: data.len(),
        })
    }
}

/// One-off [`Compressor::compress`]; build a [`Compressor`] once to compress many inputs with a
/// dictionary.
pub fn compress(
    data: &[u8],
    level: i32,
    dictionary: Option<&Dictionary>,
) -> Result<Compressed, CompressError> {
    Compressor::new(level, dictionary)?.compress(data)
}

/// Restores the `original_bytes` bytes stored with `method`. A method naming a dictionary needs
/// that dictionary.
pub fn decompress(
    stored: &[u8],
    method: CompressionMethod,
    original_bytes: usize,
    dictionary: Option<&Dictionary>,
) -> Result<Vec<u8>, CompressError> {
    let data = match method {
        CompressionMethod::None => stored.to_vec(),
        CompressionMethod::Zstd {
            dictionary: None, ..
        } => zstd::bulk::decompress(stored, original_bytes)?,
        CompressionMethod::Zstd {
            dictionary: Some(needed),
            ..
        } => match dictionary {
            Some(d) if d.id == needed => {
                zstd::bulk::Decompressor::with_prepared_dictionary(&d.decoder)?
                    .decompress(stored, original_bytes)?
            }
            other => {
                return Err(CompressError::Dictionary {
                    method: method.to_string(),
                    needed,
                    given: other.map_or("none given".to_owned(), |d| format!("got {}", d.id)),
                })
            }
        },
    };
    if data.len() != original_bytes {
        return Err(CompressError::Size {
            got: data.len(),
            expected: original_bytes,
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::corpus;
    use proptest::prelude::*;

    fn sample_contexts(n: usize) -> Vec<Vec<u8>> {
        (0..n as u64)
            .map(|seed| corpus::generate(seed, 300).messages_json.into_bytes())
            .collect()
    }

    #[test]
    fn method_names_round_trip() {
        for m in [
            CompressionMethod::None,
            CompressionMethod::Zstd {
                level: 3,
                dictionary: None,
            },
            CompressionMethod::Zstd {
                level: 19,
                dictionary: Some(12345),
            },
        ] {
            assert_eq!(m.to_string().parse::<CompressionMethod>().unwrap(), m);
        }
        assert_eq!(
            CompressionMethod::Zstd {
                level: 3,
                dictionary: Some(7)
            }
            .to_string(),
            "zstd-3-dict-7"
        );
    }

    #[test]
    fn unknown_method_names_are_refused() {
        for s in [
            "",
            "gzip",
            "zstd-",
            "zstd-0",
            "zstd-23",
            "zstd-3-dict-",
            "zstd-3-dict-0",
            "zstd-x",
        ] {
            assert!(s.parse::<CompressionMethod>().is_err(), "{s}");
        }
    }

    #[test]
    fn chat_json_compresses_and_restores() {
        let data = corpus::generate(1, 5_000).messages_json.into_bytes();
        let c = compress(&data, DEFAULT_LEVEL, None).unwrap();
        assert_eq!(c.method.to_string(), "zstd-3");
        assert!(c.ratio() > 2.0, "ratio {}", c.ratio());
        assert_eq!(
            decompress(&c.bytes, c.method, data.len(), None).unwrap(),
            data
        );
    }

    #[test]
    fn incompressible_tiny_input_is_stored_as_is() {
        let c = compress(b"[]", 3, None).unwrap();
        assert_eq!(c.method, CompressionMethod::None);
        assert_eq!(c.bytes, b"[]");
        assert_eq!(c.ratio(), 1.0);
    }

    #[test]
    fn a_compressor_is_shared_between_threads() {
        fn shareable<T: Send + Sync>(_: &T) {}
        let c = Compressor::new(3, None).unwrap();
        shareable(&c);
        assert_eq!(c.method().to_string(), "zstd-3");
    }

    #[test]
    fn level_out_of_range_is_refused() {
        assert!(matches!(
            compress(b"x", 0, None),
            Err(CompressError::Level(0))
        ));
    }

    #[test]
    fn dictionary_round_trips_and_is_named_in_the_method() {
        let samples = sample_contexts(200);
        let dict = Dictionary::train(&samples, 16 * 1024).unwrap();
        let data = corpus::generate(10_000, 300).messages_json.into_bytes();
        let with = compress(&data, 3, Some(&dict)).unwrap();
        let without = compress(&data, 3, None).unwrap();
        assert_eq!(
            with.method.to_string(),
            format!("zstd-3-dict-{}", dict.id())
        );
        assert!(with.stored_bytes() < without.stored_bytes());
        assert_eq!(
            decompress(&with.bytes, with.method, data.len(), Some(&dict)).unwrap(),
            data
        );
        let reloaded = Dictionary::from_bytes(dict.bytes().to_vec()).unwrap();
        assert_eq!(reloaded.id(), dict.id());
    }

    #[test]
    fn a_missing_dictionary_is_an_error_not_garbage() {
        let samples = sample_contexts(200);
        let dict = Dictionary::train(&samples, 16 * 1024).unwrap();
        let data = &samples[0];
        let c = compress(data, 3, Some(&dict)).unwrap();
        assert!(matches!(
            decompress(&c.bytes, c.method, data.len(), None),
            Err(CompressError::Dictionary { .. })
        ));
    }

    #[test]
    fn a_wrong_original_size_is_an_error() {
        let data = corpus::generate(2, 1_000).messages_json.into_bytes();
        let c = compress(&data, 3, None).unwrap();
        assert!(decompress(&c.bytes, c.method, data.len() - 1, None).is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(data in prop::collection::vec(any::<u8>(), 0..4096), level in 1i32..=19) {
            let c = compress(&data, level, None).unwrap();
            prop_assert!(c.stored_bytes() <= data.len().max(1));
            prop_assert_eq!(decompress(&c.bytes, c.method, data.len(), None).unwrap(), data);
        }
    }
}
