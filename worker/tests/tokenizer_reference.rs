//! The tokenizer against the reference `CLIPTokenizer` on SDXL's full 49,408-token vocabulary: ids exact for
//! tricky prompts (case, punctuation, contractions, digits, accents, CJK, emoji, control characters, special
//! tokens written in the text, over-long prompts), with both pad tokens SDXL uses.

use std::io::Read;
use std::path::{Path, PathBuf};

use sdxl_worker::tokenizer::{ClipTokenizer, TokenizerOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    text: String,
    pad: String,
    input_ids: Vec<u32>,
    truncated: bool,
}

fn gunzip(path: &Path) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut out).unwrap();
    out
}

#[test]
fn full_vocabulary_ids_match_the_reference() {
    let worker = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let vocab_dir = worker.join("tests/fixtures/tokenizer-full");
    let vocab = serde_json::from_str(&gunzip(&vocab_dir.join("vocab.json.gz"))).unwrap();
    let merges = gunzip(&vocab_dir.join("merges.txt.gz"));
    let cases: Vec<Case> =
        serde_json::from_slice(&std::fs::read(worker.join("tests/fixtures/tokenizer-full/cases.json")).unwrap())
            .unwrap();
    assert!(cases.len() >= 80);
    let eos_padded = ClipTokenizer::new(vocab, &merges, TokenizerOptions::sdxl()).unwrap();
    let vocab = serde_json::from_str(&gunzip(&vocab_dir.join("vocab.json.gz"))).unwrap();
    let bang_padded =
        ClipTokenizer::new(vocab, &merges, TokenizerOptions { pad: "!", ..TokenizerOptions::sdxl() }).unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let tokenizer = if case.pad == "!" { &bang_padded } else { &eos_padded };
        let tokens = tokenizer.encode(&case.text);
        if tokens.ids != case.input_ids || (tokens.dropped > 0) != case.truncated {
            failures.push(format!(
                "{:?} (pad {:?}):\n  ours {:?} dropped {}\n  ref  {:?} truncated {}",
                case.text, case.pad, tokens.ids, tokens.dropped, case.input_ids, case.truncated
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
