//! OpenSSH's name patterns (match.c): `*` and `?` wildcards over a whole
//! string, and comma-separated lists with `!` negation. Pure; the time a
//! match takes is bounded by `text × pattern`, whoever chose the text.

/// OpenSSH's `match_pattern`: `*` and `?` wildcards, whole-string match.
///
/// Iterative, backtracking only to the last `*`: at most `text × pattern`
/// steps. A recursive match (OpenSSH's) takes time exponential in the
/// number of `*`s, and the text can be a user name a forwarded client chose.
pub fn match_pattern(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut ti, mut pi) = (0, 0);
    // The last `*` seen, and how much text it has taken so far. A later `*`
    // makes an earlier one's choice final: whatever the earlier one could
    // take instead, the later one can take too.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // The `*` takes one more character and the rest retries.
                Some((star_pi, star_ti)) => {
                    star = Some((star_pi, star_ti + 1));
                    pi = star_pi + 1;
                    ti = star_ti + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// OpenSSH's `match_pattern_list` as the allow-list uses it: true when some
/// comma-separated pattern matches and no negated (`!`) one does.
pub fn match_pattern_list(text: &str, list: &str) -> bool {
    let mut matched = false;
    for pattern in list.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if match_pattern(text, negated) => return false,
            Some(_) => {}
            None => matched |= match_pattern(text, pattern),
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_openssh() {
        assert!(match_pattern("deploy", "deploy"));
        assert!(match_pattern("deploy", "d*"));
        assert!(match_pattern("deploy", "*"));
        assert!(match_pattern("ab", "a?"));
        assert!(!match_pattern("--BADUSER", "root"));
        assert!(!match_pattern("abc", "a?"));
        assert!(match_pattern("", "**"));
        assert!(!match_pattern("", "?"));
        assert!(match_pattern("bastion-ä", "*-?"));
    }

    /// The plain recursive definition, for comparison on small inputs.
    fn match_recursive(t: &[char], p: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| match_recursive(&t[i..], rest)),
            Some(('?', rest)) => !t.is_empty() && match_recursive(&t[1..], rest),
            Some((c, rest)) => t.first() == Some(c) && match_recursive(&t[1..], rest),
        }
    }

    /// Every string over `alphabet` up to `max` characters long.
    fn all_strings(alphabet: &[char], max: usize) -> Vec<String> {
        let mut out = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            out.extend(last.iter().cloned());
        }
        out
    }

    #[test]
    fn pattern_matching_agrees_with_the_recursive_definition() {
        let texts = all_strings(&['a', 'b'], 6);
        let patterns = all_strings(&['a', 'b', '*', '?'], 5);
        let mut matched = 0;
        for p in &patterns {
            let pc: Vec<char> = p.chars().collect();
            for t in &texts {
                let tc: Vec<char> = t.chars().collect();
                let expected = match_recursive(&tc, &pc);
                assert_eq!(match_pattern(t, p), expected, "{t:?} against {p:?}");
                matched += usize::from(expected);
            }
        }
        // Both outcomes were exercised in bulk.
        assert!(matched > 10_000 && matched < texts.len() * patterns.len() / 2);
    }

    #[test]
    fn many_stars_against_a_long_near_miss_still_decide() {
        // Exponential for a recursive match; at most text × pattern steps here.
        let text = "a".repeat(100_000);
        assert!(!match_pattern(&text, "*a*a*a*a*a*a*a*a*a*a*b"));
        assert!(match_pattern(&text, "*a*a*a*a*a*a*a*a*a*a*"));
    }
}
