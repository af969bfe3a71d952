//! Pinyin search keys for residents' names.
//!
//! A resident is found by a substring of the name, by full pinyin (`zhangsan`) or by
//! pinyin initials (`zs`). Surnames that are read differently from the everyday reading
//! of the character (单 shan, 曾 zeng, 区 ou …) are indexed under every reading, so that
//! a worker who types either reading finds the person.

use ::pinyin::ToPinyin;

/// Search keys of a person's name, lowercase ASCII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameKeys {
    /// Whole name in pinyin without separators, one entry per surname reading.
    pub full: Vec<String>,
    /// First letter of each syllable, one entry per surname reading.
    pub initials: Vec<String>,
}

/// Single-character surnames with more than one reading. The reading as a surname
/// comes first.
const POLYPHONIC_SURNAMES: &[(char, &[&str])] = &[
    ('曾', &["zeng", "ceng"]),
    ('单', &["shan", "dan"]),
    ('区', &["ou", "qu"]),
    ('仇', &["qiu", "chou"]),
    ('解', &["xie", "jie"]),
    ('查', &["zha", "cha"]),
    ('朴', &["piao", "pu"]),
    ('盖', &["ge", "gai"]),
    ('乐', &["yue", "le"]),
    ('覃', &["qin", "tan"]),
    ('缪', &["miao", "mou"]),
    ('翟', &["zhai", "di"]),
    ('尉', &["yu", "wei"]),
    ('种', &["chong", "zhong"]),
    ('万', &["wan", "mo"]),
    ('折', &["she", "zhe"]),
    ('重', &["chong", "zhong"]),
    ('秘', &["bi", "mi"]),
    ('繁', &["po", "fan"]),
    ('召', &["shao", "zhao"]),
    ('句', &["gou", "ju"]),
    ('员', &["yun", "yuan"]),
    ('柏', &["bai", "bo"]),
    ('费', &["fei", "bi"]),
    ('车', &["che", "ju"]),
    ('长', &["chang", "zhang"]),
    ('薄', &["bo", "bao"]),
    ('阚', &["kan", "han"]),
    ('卜', &["bu", "bo"]),
];

/// Two-character surnames, indexed as one unit with the given syllables.
const COMPOUND_SURNAMES: &[(&str, &[&str])] = &[
    ("欧阳", &["ou", "yang"]),
    ("司马", &["si", "ma"]),
    ("诸葛", &["zhu", "ge"]),
    ("上官", &["shang", "guan"]),
    ("东方", &["dong", "fang"]),
    ("皇甫", &["huang", "fu"]),
    ("尉迟", &["yu", "chi"]),
    ("公孙", &["gong", "sun"]),
    ("慕容", &["mu", "rong"]),
    ("长孙", &["zhang", "sun"]),
    ("令狐", &["ling", "hu"]),
    ("夏侯", &["xia", "hou"]),
    ("宇文", &["yu", "wen"]),
    ("司徒", &["si", "tu"]),
    ("司空", &["si", "kong"]),
    ("端木", &["duan", "mu"]),
    ("澹台", &["tan", "tai"]),
    ("万俟", &["mo", "qi"]),
    ("独孤", &["du", "gu"]),
    ("呼延", &["hu", "yan"]),
    ("轩辕", &["xuan", "yuan"]),
    ("南宫", &["nan", "gong"]),
    ("西门", &["xi", "men"]),
    ("钟离", &["zhong", "li"]),
    ("宗政", &["zong", "zheng"]),
    ("濮阳", &["pu", "yang"]),
    ("公冶", &["gong", "ye"]),
    ("申屠", &["shen", "tu"]),
    ("太史", &["tai", "shi"]),
    ("闻人", &["wen", "ren"]),
    ("赫连", &["he", "lian"]),
    ("拓跋", &["tuo", "ba"]),
    ("完颜", &["wan", "yan"]),
];

/// One syllable (or kept ASCII character) of a name: its full spelling and its initial.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    full: String,
    initial: String,
}

impl Piece {
    /// Builds a piece from a pinyin spelling, forcing it into lowercase ASCII
    /// (`ü` → `v`, `ê` → `e`, other non-ASCII dropped). `None` when nothing remains.
    fn from_spelling(s: &str) -> Option<Piece> {
        let full: String = s
            .chars()
            .filter_map(|c| match c {
                'ü' | 'Ü' => Some('v'),
                'ê' | 'Ê' => Some('e'),
                c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        let initial = full.chars().next()?.to_string();
        Some(Piece { full, initial })
    }
}

/// The piece of one character of the name that is not part of the surname: its primary
/// pinyin reading if it is Han, itself lowercased if it is an ASCII letter or digit,
/// otherwise nothing.
fn char_piece(c: char) -> Option<Piece> {
    if c.is_ascii_alphanumeric() {
        let s = c.to_ascii_lowercase().to_string();
        return Some(Piece {
            full: s.clone(),
            initial: s,
        });
    }
    c.to_pinyin().and_then(|p| Piece::from_spelling(p.plain()))
}

/// Every reading of the surname at the start of `chars`, each as its syllables, and
/// how many characters the surname takes. `None` when the name does not start with
/// a Han character.
fn surname(chars: &[char]) -> Option<(Vec<Vec<Piece>>, usize)> {
    if let [a, b, ..] = chars {
        for (compound, syllables) in COMPOUND_SURNAMES {
            let mut cs = compound.chars();
            if cs.next() == Some(*a) && cs.next() == Some(*b) {
                let reading = syllables
                    .iter()
                    .filter_map(|s| Piece::from_spelling(s))
                    .collect();
                return Some((vec![reading], 2));
            }
        }
    }
    let first = *chars.first()?;
    if let Some((_, readings)) = POLYPHONIC_SURNAMES.iter().find(|(c, _)| *c == first) {
        let readings = readings
            .iter()
            .filter_map(|s| Piece::from_spelling(s))
            .map(|p| vec![p])
            .collect();
        return Some((readings, 1));
    }
    let reading = first
        .to_pinyin()
        .and_then(|p| Piece::from_spelling(p.plain()))?;
    Some((vec![vec![reading]], 1))
}

/// Computes the pinyin search keys of a name.
///
/// The surname (the first character, or a two-character compound surname such as
/// 欧阳) contributes every reading it has as a surname; the other characters
/// contribute their primary reading. ASCII letters and digits are kept (lowercased);
/// other characters without pinyin are dropped.
///
/// `曾小明` → full `["zengxiaoming", "cengxiaoming"]`, initials `["zxm", "cxm"]`.
pub fn name_keys(name: &str) -> NameKeys {
    let chars: Vec<char> = name.trim().chars().collect();
    let (readings, rest_start) = surname(&chars).unwrap_or_else(|| (vec![Vec::new()], 0));
    let rest: Vec<Piece> = chars
        .iter()
        .skip(rest_start)
        .filter_map(|c| char_piece(*c))
        .collect();

    let mut keys = NameKeys {
        full: Vec::new(),
        initials: Vec::new(),
    };
    for reading in readings {
        let pieces = reading.iter().chain(rest.iter());
        let full: String = pieces.clone().map(|p| p.full.as_str()).collect();
        let initials: String = pieces.map(|p| p.initial.as_str()).collect();
        push_unique(&mut keys.full, full);
        push_unique(&mut keys.initials, initials);
    }
    keys
}

/// Appends `s` unless it is empty or already present.
fn push_unique(v: &mut Vec<String>, s: String) {
    if !s.is_empty() && !v.contains(&s) {
        v.push(s);
    }
}

/// Normalises a search query: trims, lowercases ASCII, removes spaces and apostrophes.
///
/// Any whitespace (including the full-width space) counts as a space; `'`, `’`, `‘`
/// and the full-width `＇` count as apostrophes (as in `xi'an`).
pub fn normalize_query(q: &str) -> String {
    q.trim()
        .chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '\'' | '’' | '‘' | '＇'))
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// True when the query is pure ASCII letters (so it should be matched against pinyin keys).
///
/// The query is normalised with [`normalize_query`] first, so `"Zhang San"` counts;
/// an empty query does not.
pub fn is_pinyin_query(q: &str) -> bool {
    let n = normalize_query(q);
    !n.is_empty() && n.chars().all(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_ascii_lower(k: &NameKeys) {
        for s in k.full.iter().chain(k.initials.iter()) {
            assert!(!s.is_empty(), "{k:?}");
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "not lowercase ASCII: {s:?} in {k:?}"
            );
        }
    }

    #[test]
    fn plain_name() {
        let k = name_keys("张三");
        assert!(k.full.contains(&"zhangsan".to_owned()), "{k:?}");
        assert!(k.initials.contains(&"zs".to_owned()), "{k:?}");
        assert_eq!(
            k,
            NameKeys {
                full: vec!["zhangsan".into()],
                initials: vec!["zs".into()]
            }
        );
    }

    #[test]
    fn polyphonic_surnames_both_readings_surname_first() {
        let k = name_keys("曾小明");
        assert_eq!(k.full, vec!["zengxiaoming", "cengxiaoming"]);
        assert_eq!(k.initials, vec!["zxm", "cxm"]);

        let k = name_keys("单田芳");
        assert_eq!(k.full, vec!["shantianfang", "dantianfang"]);
        assert_eq!(k.initials, vec!["stf", "dtf"]);

        for (name, a, b) in [
            ("区", "ou", "qu"),
            ("仇", "qiu", "chou"),
            ("解", "xie", "jie"),
            ("查", "zha", "cha"),
            ("朴", "piao", "pu"),
            ("盖", "ge", "gai"),
            ("乐", "yue", "le"),
            ("覃", "qin", "tan"),
            ("缪", "miao", "mou"),
            ("翟", "zhai", "di"),
            ("尉", "yu", "wei"),
            ("种", "chong", "zhong"),
            ("万", "wan", "mo"),
            ("折", "she", "zhe"),
            ("薄", "bo", "bao"),
            ("阚", "kan", "han"),
            ("卜", "bu", "bo"),
        ] {
            let k = name_keys(&format!("{name}一"));
            assert_eq!(k.full, vec![format!("{a}yi"), format!("{b}yi")], "{name}");
            assert_ascii_lower(&k);
        }
    }

    #[test]
    fn polyphonic_char_outside_surname_uses_one_reading() {
        // 曾 in the given name is not expanded.
        let k = name_keys("张曾");
        assert_eq!(k.full.len(), 1, "{k:?}");
        assert_eq!(k.initials.len(), 1, "{k:?}");
    }

    #[test]
    fn compound_surnames() {
        let k = name_keys("长孙无忌");
        assert_eq!(k.full, vec!["zhangsunwuji"]);
        assert_eq!(k.initials, vec!["zswj"]);

        let k = name_keys("欧阳修");
        assert_eq!(k.full, vec!["ouyangxiu"]);
        assert_eq!(k.initials, vec!["oyx"]);

        assert_eq!(name_keys("尉迟恭").full, vec!["yuchigong"]);
        assert_eq!(name_keys("诸葛亮").initials, vec!["zgl"]);
        assert_eq!(name_keys("司马").full, vec!["sima"]);
        for n in ["上官婉儿", "东方明", "皇甫嵩", "公孙胜", "慕容复"] {
            let k = name_keys(n);
            assert_eq!(k.full.len(), 1, "{n}: {k:?}");
            assert_ascii_lower(&k);
        }
    }

    #[test]
    fn mixed_and_non_han() {
        let k = name_keys("李A3");
        assert_eq!(k.full, vec!["lia3"]);
        assert_eq!(k.initials, vec!["la3"]);

        let k = name_keys("买买提·艾力");
        assert_eq!(k.full, vec!["maimaitiaili"]);
        assert_eq!(k.initials, vec!["mmtal"]);

        let k = name_keys("Tom 张");
        assert_eq!(k.full, vec!["tomzhang"]);
        assert_eq!(k.initials, vec!["tomz"]);

        let k = name_keys("  曾A  ");
        assert_eq!(k.full, vec!["zenga", "cenga"]);
    }

    #[test]
    fn u_umlaut_becomes_v() {
        let k = name_keys("吕女");
        assert_ascii_lower(&k);
        assert_eq!(k.full, vec!["lvnv"]);
        assert_eq!(k.initials, vec!["ln"]);
    }

    #[test]
    fn empty_and_unindexable() {
        let empty = NameKeys {
            full: vec![],
            initials: vec![],
        };
        assert_eq!(name_keys(""), empty);
        assert_eq!(name_keys("   "), empty);
        assert_eq!(name_keys("·—😀"), empty);
    }

    #[test]
    fn outputs_are_lowercase_ascii() {
        for n in [
            "张三",
            "曾小明",
            "单雄信",
            "长孙无忌",
            "欧阳娜娜",
            "李A3",
            "吕布",
            "略",
            "欸",
            "Ünal 王",
            "ÉCOLE",
            "😀张",
            "张😀三",
            "ｚｈａｎｇ",
            "王\u{0}五",
        ] {
            assert_ascii_lower(&name_keys(n));
        }
    }

    #[test]
    fn queries() {
        assert_eq!(normalize_query("  Zhang San "), "zhangsan");
        assert_eq!(normalize_query("xi'an"), "xian");
        assert_eq!(normalize_query("Xi’An"), "xian");
        assert_eq!(normalize_query("张　三"), "张三");
        assert_eq!(normalize_query(""), "");

        assert!(is_pinyin_query("zs"));
        assert!(is_pinyin_query("ZhangSan"));
        assert!(is_pinyin_query("zhang san"));
        assert!(!is_pinyin_query(""));
        assert!(!is_pinyin_query("  "));
        assert!(!is_pinyin_query("张"));
        assert!(!is_pinyin_query("zs3"));
        assert!(!is_pinyin_query("zhang三"));
        assert!(!is_pinyin_query("ü"));
    }
}
