//! The CLIP byte-level BPE tokenizer, as the reference `transformers.CLIPTokenizer` (the one diffusers loads
//! for SDXL) behaves without `ftfy` installed: special tokens split out first (including a custom pad token such
//! as tokenizer_2's `!`), BERT-style clean-up, NFC, lower case, the CLIP word pattern, `</w>` word ends.

use std::collections::HashMap;
use std::path::Path;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use crate::config::{TokenizerConfig, read_json};
use crate::error::PipelineError;

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
/// The reference reads at most this many merges (`49152 - 256 - 2`), whatever the file holds.
const MAX_MERGES: usize = 49152 - 256 - 2;

/// What a vocabulary alone does not say: the pad token, the context length, and `do_lower_case`.
#[derive(Debug, Clone, Copy)]
pub struct TokenizerOptions<'a> {
    pub pad: &'a str,
    pub max_length: usize,
    pub lower_case_first: bool,
}

impl TokenizerOptions<'_> {
    /// SDXL's `tokenizer/` (padded with the end token) and, with `pad: "!"`, its `tokenizer_2/`.
    pub fn sdxl() -> Self {
        TokenizerOptions { pad: EOS, max_length: 77, lower_case_first: true }
    }
}

/// A prompt's token ids, padded to the model's context length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    /// How many tokens of the prompt did not fit and were dropped (the reference drops them silently).
    pub dropped: usize,
}

#[derive(Debug)]
pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    byte_chars: [char; 256],
    /// Tokens that are matched in the raw text before anything else, longest first.
    specials: Vec<(String, u32)>,
    bos: u32,
    eos: u32,
    pad: u32,
    max_length: usize,
    /// The reference lower-cases the raw text before looking for special tokens when its config says
    /// `do_lower_case`, so `<|ENDOFTEXT|>` typed in a prompt becomes the end token.
    lower_case_first: bool,
    word: Regex,
    control: Regex,
}

impl ClipTokenizer {
    /// Reads `vocab.json`, `merges.txt` and (when present) `tokenizer_config.json` / `special_tokens_map.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, PipelineError> {
        let vocab_path = dir.join("vocab.json");
        let vocab: HashMap<String, u32> = read_json(&vocab_path)?;
        let merges_path = dir.join("merges.txt");
        let merges = std::fs::read_to_string(&merges_path).map_err(|e| PipelineError::io(&merges_path, e))?;
        let config_path = dir.join("tokenizer_config.json");
        let config: Option<TokenizerConfig> = config_path.is_file().then(|| read_json(&config_path)).transpose()?;
        let map_path = dir.join("special_tokens_map.json");
        let map: Option<TokenizerConfig> = map_path.is_file().then(|| read_json(&map_path)).transpose()?;
        let pad = config
            .as_ref()
            .and_then(|c| c.pad_token.clone())
            .or_else(|| map.as_ref().and_then(|m| m.pad_token.clone()))
            .map(|t| t.text().to_string())
            .unwrap_or_else(|| EOS.to_string());
        let max_length = config.as_ref().map_or(77, |c| c.model_max_length);
        let lower_case_first = config.as_ref().and_then(|c| c.do_lower_case).unwrap_or(false);
        Self::new(vocab, &merges, TokenizerOptions { pad: &pad, max_length, lower_case_first })
    }

    pub fn new(vocab: HashMap<String, u32>, merges: &str, options: TokenizerOptions) -> Result<Self, PipelineError> {
        let TokenizerOptions { pad, max_length, lower_case_first } = options;
        let mut ranks = HashMap::new();
        // The first line is the `#version` header, skipped unread as the reference does.
        for (rank, line) in merges.trim().split('\n').skip(1).take(MAX_MERGES).enumerate() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some(a), Some(b)) => {
                    ranks.insert((a.to_string(), b.to_string()), rank);
                }
                _ => return Err(PipelineError::Tokenizer(format!("merges.txt line {}: {line:?}", rank + 2))),
            }
        }
        let id = |token: &str| {
            vocab.get(token).copied().ok_or_else(|| PipelineError::Tokenizer(format!("{token:?} is not in vocab.json")))
        };
        let (bos, eos, pad_id) = (id(BOS)?, id(EOS)?, id(pad)?);
        if max_length < 2 {
            return Err(PipelineError::Tokenizer(format!("model_max_length {max_length} is too short")));
        }
        let mut specials: Vec<(String, u32)> = vec![(BOS.into(), bos), (EOS.into(), eos)];
        if pad != BOS && pad != EOS {
            specials.push((pad.to_string(), pad_id));
        }
        specials.sort_by_key(|(text, _)| std::cmp::Reverse(text.len()));
        let word =
            Regex::new(r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+")
                .expect("the CLIP word pattern is valid");
        let control = Regex::new(r"^\p{C}$").expect("the control pattern is valid");
        Ok(Self {
            vocab,
            ranks,
            byte_chars: byte_chars(),
            specials,
            bos,
            eos,
            pad: pad_id,
            max_length,
            lower_case_first,
            word,
            control,
        })
    }

    /// Start token, the prompt's tokens (cut to fit), end token, then padding to `max_length`.
    pub fn encode(&self, text: &str) -> Tokens {
        let mut body = self.tokenize(text);
        let room = self.max_length - 2;
        let dropped = body.len().saturating_sub(room);
        body.truncate(room);
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos);
        ids.extend(body);
        ids.push(self.eos);
        ids.resize(self.max_length, self.pad);
        Tokens { ids, dropped }
    }

    /// The prompt's token ids without start, end or padding.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        let lowered;
        let mut rest = if self.lower_case_first {
            lowered = text.to_lowercase();
            lowered.as_str()
        } else {
            text
        };
        while !rest.is_empty() {
            let next = self
                .specials
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by_key(|(at, len, _)| (*at, std::cmp::Reverse(*len)));
            match next {
                Some((at, len, id)) => {
                    self.tokenize_plain(&rest[..at], &mut ids);
                    ids.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.tokenize_plain(rest, &mut ids);
                    rest = "";
                }
            }
        }
        ids
    }

    fn tokenize_plain(&self, text: &str, ids: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let cleaned = self.clean(text);
        let words: Vec<String> = cleaned.split_whitespace().map(str::to_lowercase).collect();
        let joined = words.join(" ");
        for m in self.word.find_iter(&joined) {
            let mapped: String = m.as_str().bytes().map(|b| self.byte_chars[b as usize]).collect();
            for piece in self.bpe(&mapped) {
                // The vocabulary holds every merge result and every byte, so a miss means a broken vocab.json:
                // the reference maps it to the unknown token, which for CLIP is the end token.
                ids.push(self.vocab.get(&piece).copied().unwrap_or(self.eos));
            }
        }
    }

    /// BERT's basic clean-up as CLIP's fallback uses it: drop NULs, U+FFFD and control characters, turn
    /// whitespace into spaces, put spaces around CJK ideographs, then NFC.
    fn clean(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut buf = [0u8; 4];
        for c in text.chars() {
            if c == '\0' || c == '\u{FFFD}' {
                continue;
            }
            let whitespace = matches!(c, ' ' | '\t' | '\n' | '\r') || is_space_separator(c);
            if whitespace {
                out.push(' ');
                continue;
            }
            if self.control.is_match(c.encode_utf8(&mut buf)) {
                continue;
            }
            if is_cjk(c) {
                out.push(' ');
                out.push(c);
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        out.nfc().collect()
    }

    fn bpe(&self, token: &str) -> Vec<String> {
        let chars: Vec<char> = token.chars().collect();
        let Some((last, init)) = chars.split_last() else {
            return Vec::new();
        };
        let mut word: Vec<String> = init.iter().map(|c| c.to_string()).collect();
        word.push(format!("{last}</w>"));
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|pair| {
                    self.ranks
                        .get(&(pair[0].clone(), pair[1].clone()))
                        .map(|rank| (*rank, pair[0].clone(), pair[1].clone()))
                })
                .min_by_key(|(rank, _, _)| *rank);
            let Some((_, first, second)) = best else { break };
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == first && word[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(std::mem::take(&mut word[i]));
                    i += 1;
                }
            }
            word = merged;
        }
        word
    }
}

/// Unicode category Zs, the characters the reference turns into plain spaces.
fn is_space_separator(c: char) -> bool {
    matches!(c, '\u{0020}' | '\u{00A0}' | '\u{1680}' | '\u{2000}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}')
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// GPT-2's reversible map from bytes to printable characters, which the vocabulary is written in.
fn byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut next = 256u32;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            let c = next;
            next += 1;
            c
        };
        table[b as usize] = char::from_u32(c).expect("byte map stays in the BMP");
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary built like CLIP's from a handful of merges.
    fn tiny(merges: &[(&str, &str)], pad: &str) -> ClipTokenizer {
        let chars = byte_chars();
        let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
        tokens.extend(chars.iter().map(|c| format!("{c}</w>")));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push(BOS.into());
        tokens.push(EOS.into());
        let vocab = tokens.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
        let mut text = String::from("#version: 0.2\n");
        for (a, b) in merges {
            text.push_str(&format!("{a} {b}\n"));
        }
        ClipTokenizer::new(vocab, &text, TokenizerOptions { pad, max_length: 8, lower_case_first: true }).unwrap()
    }

    #[test]
    fn merges_apply_by_rank_and_words_end_with_the_marker() {
        let t = tiny(&[("h", "i</w>"), ("a", "b"), ("ab", "c</w>")], EOS);
        let hi = t.vocab["hi</w>"];
        let abc = t.vocab["abc</w>"];
        assert_eq!(t.tokenize("HI abc"), vec![hi, abc]);
        // No merge for "x": a single character still carries the word end.
        assert_eq!(t.tokenize("x"), vec![t.vocab["x</w>"]]);
    }

    #[test]
    fn encode_pads_truncates_and_counts_what_was_dropped() {
        let t = tiny(&[], EOS);
        let short = t.encode("a");
        assert_eq!(short.ids, vec![t.bos, t.vocab["a</w>"], t.eos, t.eos, t.eos, t.eos, t.eos, t.eos]);
        assert_eq!(short.dropped, 0);
        let long = t.encode("a b c d e f g h");
        assert_eq!(long.ids.len(), 8);
        assert_eq!(long.ids[7], t.eos);
        assert_eq!(long.ids[6], t.vocab["f</w>"]);
        assert_eq!(long.dropped, 2);
    }

    #[test]
    fn a_custom_pad_token_is_split_out_of_the_text() {
        let t = tiny(&[], "!");
        let bang = t.vocab["!"];
        assert_eq!(t.tokenize("a!"), vec![t.vocab["a</w>"], bang]);
        let p = t.encode("a");
        assert_eq!(&p.ids[3..], &[bang; 5]);
        let plain = tiny(&[], EOS);
        assert_eq!(plain.tokenize("a!"), vec![plain.vocab["a</w>"], plain.vocab["!</w>"]]);
    }

    #[test]
    fn control_characters_vanish_and_digits_split() {
        let t = tiny(&[], EOS);
        assert_eq!(t.tokenize("a\u{0007}\u{200B}b"), t.tokenize("ab"));
        assert_eq!(t.tokenize("12"), vec![t.vocab["1</w>"], t.vocab["2</w>"]]);
        assert_eq!(t.tokenize("<|endoftext|>"), vec![t.eos]);
        assert!(t.tokenize("").is_empty());
    }
}
