//! Readable generated VM names (`brave-otter`), for when the user gives none.

use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "agile", "amber", "ample", "azure", "bold", "brave", "brisk", "calm", "clever", "cosmic", "crisp",
    "dapper", "eager", "early", "fancy", "fast", "fuzzy", "gentle", "glad", "golden", "grand", "happy",
    "hardy", "humble", "jolly", "keen", "kind", "lively", "lucky", "mellow", "merry", "mighty", "modest",
    "noble", "plucky", "polite", "proud", "quick", "quiet", "rapid", "shiny", "silent", "smart", "snappy",
    "steady", "sunny", "swift", "tidy", "vivid", "witty",
];

const NOUNS: &[&str] = &[
    "badger", "beaver", "bison", "cobra", "condor", "coyote", "crane", "dingo", "dolphin", "eagle", "falcon",
    "ferret", "finch", "gecko", "heron", "ibex", "jackal", "koala", "lemur", "lynx", "marmot", "marten",
    "mole", "newt", "ocelot", "orca", "osprey", "otter", "owl", "panda", "puffin", "quail", "raven", "robin",
    "salmon", "seal", "shrew", "sparrow", "stoat", "swan", "tapir", "tern", "tiger", "toucan", "trout",
    "viper", "walrus", "weasel", "wolf", "yak",
];

/// A name not in `taken`: `adjective-noun`, with a numeric suffix if the
/// random picks keep colliding.
pub fn generate(taken: &dyn Fn(&str) -> bool) -> String {
    let mut rng = rand::rng();
    let mut pick = || {
        format!(
            "{}-{}",
            ADJECTIVES.choose(&mut rng).copied().unwrap_or("quick"),
            NOUNS.choose(&mut rng).copied().unwrap_or("otter")
        )
    };
    for _ in 0..32 {
        let n = pick();
        if !taken(&n) {
            return n;
        }
    }
    let base = pick();
    (2..).map(|i| format!("{base}-{i}")).find(|n| !taken(n)).unwrap_or(base)
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_names_are_valid_and_free() {
        for _ in 0..100 {
            let n = super::generate(&|n| n.starts_with('a'));
            banger_api::validate::vm_name(&n).unwrap();
            assert!(!n.starts_with('a'));
        }
        let n = super::generate(&|n| !n.ends_with("-2"));
        assert!(n.ends_with("-2"));
    }
}
