//! ITU-T G.107 (06/2015) E-model, narrowband, for a quality estimate per leg
//! and direction: R = Ro - Is - Id - Ie,eff + A, then MOS from R (Annex B).
//!
//! What rtcgw can measure feeds it: packet loss (random, BurstR = 1), the
//! mean one-way delay Ta and the codec. Every other parameter keeps its
//! G.107 default, so Ro - Is - Idte - Idle = 93.2 at Ta = 0 and A = 0; of the
//! delay terms only Idd (the pure-delay impairment, clause 7.3) varies.
//! Values and their sources are in docs/stats.md.

/// R with every G.107 parameter at its default (Table 3): no delay, no loss,
/// a codec with Ie = 0.
pub const R_DEFAULT: f64 = 93.2;

/// A codec's equipment impairment (G.113 Appendix I values where G.113 has
/// them) and the delay it adds beyond its packet time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor Ie.
    pub ie: f64,
    /// Packet-loss robustness factor Bpl.
    pub bpl: f64,
    /// Algorithmic delay (look-ahead) in ms, added to Ta.
    pub lookahead_ms: f64,
}

impl CodecImpairment {
    /// By SDP codec name (case-insensitive, "/rate" ignored). Every leg's
    /// audio goes through NetEq with packet-loss concealment, so the
    /// with-PLC figures apply.
    pub fn of(codec: &str) -> Self {
        let name = codec.split('/').next().unwrap_or("").to_ascii_lowercase();
        match name.as_str() {
            // G.113 Appendix I, Table I.3: G.711 with PLC (G.711 Appendix I),
            // random loss: Ie = 0, Bpl = 25.1.
            "pcmu" | "pcma" => Self {
                ie: 0.0,
                bpl: 25.1,
                lookahead_ms: 0.0,
            },
            // Wideband codecs on the narrowband scale: at best transparent
            // (Ie = 0). G.113 gives their Bpl only on the wideband scale
            // (G.107.1), so G.711+PLC's robustness is assumed: an estimate
            // that errs low for Opus with in-band FEC.
            "g722" => Self {
                ie: 0.0,
                bpl: 25.1,
                lookahead_ms: 1.5,
            },
            "opus" => Self {
                ie: 0.0,
                bpl: 25.1,
                lookahead_ms: 6.5,
            },
            // Unknown: G.711 without PLC (G.113 Table I.3, Bpl = 4.3), the
            // cautious choice.
            _ => Self {
                ie: 0.0,
                bpl: 4.3,
                lookahead_ms: 0.0,
            },
        }
    }
}

/// The estimate for one leg and direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub r: f64,
    pub mos: f64,
    pub ie_eff: f64,
    pub idd: f64,
}

/// G.107 clause 7.3, Idd with mT = 100 ms and sT = 1 (the defaults).
pub fn idd(ta_ms: f64) -> f64 {
    if ta_ms <= 100.0 {
        return 0.0;
    }
    let x = (ta_ms / 100.0).log10() / 2f64.log10();
    25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
        + 2.0)
}

/// G.107 clause 7.4, effective equipment impairment under random loss
/// (BurstR = 1); `loss_pct` in percent.
pub fn ie_eff(codec: &CodecImpairment, loss_pct: f64) -> f64 {
    let ppl = loss_pct.clamp(0.0, 100.0);
    codec.ie + (95.0 - codec.ie) * ppl / (ppl + codec.bpl)
}

/// G.107 Annex B: MOS (conversational quality, estimated) from R.
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// R and MOS for a leg direction from loss (percent), mean one-way delay
/// (ms, the codec's look-ahead is added here) and codec.
pub fn estimate(codec: &CodecImpairment, loss_pct: f64, one_way_delay_ms: f64) -> Estimate {
    let idd = idd(one_way_delay_ms.max(0.0) + codec.lookahead_ms);
    let ie_eff = ie_eff(codec, loss_pct);
    let r = R_DEFAULT - idd - ie_eff;
    Estimate {
        r,
        mos: mos(r),
        ie_eff,
        idd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn mos_matches_g107_annex_b_table() {
        // G.107 Table B.1: the R boundaries of the user satisfaction classes
        // and their MOS; 93.2 is the all-defaults R.
        for (r, want) in [
            (50.0, 2.58),
            (60.0, 3.10),
            (70.0, 3.60),
            (80.0, 4.03),
            (90.0, 4.34),
            (93.2, 4.41),
        ] {
            assert!(close(mos(r), want, 0.01), "R {r}: {} != {want}", mos(r));
        }
        assert_eq!(mos(-5.0), 1.0);
        assert_eq!(mos(120.0), 4.5);
    }

    #[test]
    fn idd_is_zero_up_to_100_ms_then_grows() {
        assert_eq!(idd(0.0), 0.0);
        assert_eq!(idd(100.0), 0.0);
        // X = 1 at 200 ms: 25((2)^(1/6) - 3(1 + 3^-6)^(1/6) + 2).
        assert!(close(idd(200.0), 3.04, 0.01), "{}", idd(200.0));
        // X = 2 at 400 ms.
        assert!(close(idd(400.0), 24.07, 0.02), "{}", idd(400.0));
        assert!(idd(300.0) > idd(200.0) && idd(400.0) > idd(300.0));
    }

    #[test]
    fn loss_impairment_follows_g113_g711_with_plc() {
        let g711 = CodecImpairment::of("PCMU/8000");
        assert_eq!(ie_eff(&g711, 0.0), 0.0);
        // 95 * 2 / (2 + 25.1)
        assert!(close(ie_eff(&g711, 2.0), 7.011, 0.001));
        // Without PLC (unknown codec) the same loss hurts far more.
        assert!(ie_eff(&CodecImpairment::of("x-unknown"), 2.0) > 30.0);
    }

    #[test]
    fn clean_short_call_is_the_default_r_and_loss_lowers_mos() {
        let g711 = CodecImpairment::of("PCMA");
        let clean = estimate(&g711, 0.0, 40.0);
        assert_eq!(clean.r, R_DEFAULT);
        assert!(close(clean.mos, 4.41, 0.005));
        let lossy = estimate(&g711, 5.0, 40.0);
        // 95 * 5 / 30.1 = 15.78: R 77.4, MOS about 3.9.
        assert!(close(lossy.r, 77.42, 0.01), "{lossy:?}");
        assert!(lossy.mos < clean.mos - 0.4);
        let late = estimate(&g711, 0.0, 400.0);
        assert!(close(late.r, 93.2 - 24.07, 0.05), "{late:?}");
        // Opus's look-ahead counts as delay.
        let opus = estimate(&CodecImpairment::of("opus/48000"), 0.0, 200.0);
        assert!(opus.idd > idd(200.0));
    }
}
