pub mod jsonl;
pub mod layers;
