//! Reading and writing prompt WAV files: 8 kHz, mono, 16-bit PCM, the one format the server
//! streams over RTP (after G.711 encoding) and HTTP.

use std::io::Cursor;
use std::path::Path;

use super::dsp::TELEPHONE_RATE;
use super::PromptError;

/// The format of every prompt file.
pub const PROMPT_SPEC: hound::WavSpec = hound::WavSpec {
    channels: 1,
    sample_rate: TELEPHONE_RATE,
    bits_per_sample: 16,
    sample_format: hound::SampleFormat::Int,
};

/// The bytes of a prompt WAV file (a plain 44-byte header, then the samples). Deterministic.
pub fn wav_bytes(samples: &[i16]) -> Result<Vec<u8>, hound::Error> {
    let mut cursor = Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    {
        let mut w = hound::WavWriter::new(&mut cursor, PROMPT_SPEC)?;
        let mut w16 = w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w16.write_sample(s);
        }
        w16.flush()?;
        w.finalize()?;
    }
    Ok(cursor.into_inner())
}

/// Why a WAV file's format is not the prompt format, if it is not.
pub fn format_problem(spec: &hound::WavSpec) -> Option<String> {
    if *spec == PROMPT_SPEC {
        return None;
    }
    let kind = match spec.sample_format {
        hound::SampleFormat::Int => "PCM",
        hound::SampleFormat::Float => "float",
    };
    Some(format!(
        "wrong format: {} Hz, {} channel(s), {}-bit {kind}; expected 8000 Hz, mono, 16-bit PCM",
        spec.sample_rate, spec.channels, spec.bits_per_sample
    ))
}

/// Reads a prompt WAV file, checking that it is 8 kHz mono 16-bit PCM and that its data is all
/// there (a file cut short is an error, not a shorter prompt).
pub fn load_wav(path: &Path) -> Result<Vec<i16>, PromptError> {
    let reader = hound::WavReader::open(path).map_err(PromptError::wav(path))?;
    checked_samples(reader, path)
}

/// Like [`load_wav`] for a prompt file already in memory (e.g. compiled into a program); `path`
/// names it in errors.
pub fn decode_wav(bytes: &[u8], path: &Path) -> Result<Vec<i16>, PromptError> {
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(PromptError::wav(path))?;
    checked_samples(reader, path)
}

fn checked_samples<R: std::io::Read>(reader: hound::WavReader<R>, path: &Path) -> Result<Vec<i16>, PromptError> {
    if let Some(reason) = format_problem(&reader.spec()) {
        return Err(PromptError::WavFormat { path: path.to_owned(), reason });
    }
    let declared = reader.len() as usize;
    let samples = read_samples(reader).map_err(PromptError::wav(path))?;
    if samples.len() != declared {
        return Err(PromptError::WavFormat {
            path: path.to_owned(),
            reason: format!("truncated: header declares {declared} samples, file holds {}", samples.len()),
        });
    }
    Ok(samples)
}

pub(crate) fn read_samples<R: std::io::Read>(mut reader: hound::WavReader<R>) -> Result<Vec<i16>, hound::Error> {
    reader.samples::<i16>().collect()
}
