//! `tend-sim`: an emulator of the Telethon send_text / send_media webhook services (see TELETHON.md §6).
