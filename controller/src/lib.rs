pub mod gastown;
