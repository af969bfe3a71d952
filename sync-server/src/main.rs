//! `xiuhua-server`: the sync server and the station's administration commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use xiuhua_server::admin::{self, GrantTarget, Listing};
use xiuhua_server::{Config, server};

#[derive(Parser)]
#[command(
    name = "xiuhua-server",
    version,
    about = "Xiuhua sync server and station administration"
)]
struct Cli {
    /// TOML configuration file (environment variables XIUHUA_* override it).
    #[arg(long, global = true, env = "XIUHUA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server.
    Serve,
    /// Runs a field day on loopback (server, four phones, offline work, sync) and exits.
    Demo {
        /// Keep the server (with the station console) running after the field day and print
        /// the secretary's console login.
        #[arg(long)]
        serve: bool,
    },
    /// Sets a user's password for the station console. Read from the terminal without echo
    /// (asked twice), or from the first line of standard input when it is not a terminal;
    /// never an argument.
    SetPassword { user: String },
    /// Districts (片区).
    District {
        #[command(subcommand)]
        cmd: AddOnly,
    },
    /// Communities (社区).
    Community {
        #[command(subcommand)]
        cmd: AddCommunity,
    },
    /// Grids (网格).
    Grid {
        #[command(subcommand)]
        cmd: AddGrid,
    },
    /// Buildings (楼栋) of a grid.
    Building {
        #[command(subcommand)]
        cmd: AddBuilding,
    },
    /// Users.
    User {
        #[command(subcommand)]
        cmd: AddOnly,
    },
    /// Grants a role on a grid, or on every grid of a community.
    Grant {
        user: String,
        #[arg(
            long,
            conflicts_with = "community",
            required_unless_present = "community"
        )]
        grid: Option<String>,
        #[arg(long)]
        community: Option<String>,
        /// 网格员, 楼门长, 社区工作者, 社区书记 or 管理员.
        #[arg(long)]
        role: String,
        /// For 楼门长: a building they look after (repeat for several).
        #[arg(long = "building")]
        buildings: Vec<String>,
    },
    /// Removes a user's grant on a grid (their devices purge it at the next sync).
    RevokeGrant {
        user: String,
        #[arg(long)]
        grid: String,
    },
    /// Prints a one-time enrollment code for a user (valid 24 hours).
    EnrollCode { user: String },
    /// Lists devices.
    Devices {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revokes a device.
    RevokeDevice { device: String },
    /// Revokes a user and all their devices.
    RevokeUser { user: String },
    /// Lists users, grids or grants.
    List { what: What },
    /// Verifies every stored document (loads, has its stored heads); quarantines broken ones
    /// and lists every quarantined document. Exits 1 when any is quarantined.
    Check,
    /// Recomputes the server's projection (what the station's console queries) from the
    /// stored documents, in one transaction.
    RebuildProjection,
}

#[derive(Subcommand)]
enum AddOnly {
    Add { id: String, name: String },
}

#[derive(Subcommand)]
enum AddCommunity {
    Add {
        id: String,
        name: String,
        #[arg(long)]
        district: String,
    },
}

#[derive(Subcommand)]
enum AddGrid {
    Add {
        id: String,
        name: String,
        #[arg(long)]
        community: String,
    },
}

#[derive(Subcommand)]
enum AddBuilding {
    Add { grid: String, name: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum What {
    Users,
    Grids,
    Grants,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if !matches!(cli.command, Command::Demo { .. }) {
        server::init_logging(&cfg);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command, cfg)) {
        Ok(out) => {
            if !out.is_empty() {
                // Not println!: a reader that closed the pipe (`| head -1`) is not an error.
                use std::io::Write;
                let mut stdout = std::io::stdout().lock();
                match writeln!(stdout, "{}", out.trim_end()).and_then(|()| stdout.flush()) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    Err(e) => {
                        eprintln!("error: cannot write the output: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Command, cfg: Config) -> Result<String, String> {
    if let Command::Serve = cmd {
        server::serve(cfg).await?;
        return Ok(String::new());
    }
    if let Command::Demo { serve } = cmd {
        return xiuhua_server::demo::run_with(serve).await;
    }
    let password = match &cmd {
        Command::SetPassword { user } => Some(read_password(user)?),
        _ => None,
    };
    let (storage, secret) = server::open_storage(&cfg).await?;
    let s = &*storage;
    let r = match cmd {
        Command::Serve | Command::Demo { .. } => Ok(String::new()),
        Command::SetPassword { user } => {
            admin::set_password(s, &user, password.as_deref().unwrap_or_default()).await
        }
        Command::District { cmd: AddOnly::Add { id, name } } => admin::add_district(s, &id, &name).await,
        Command::Community { cmd: AddCommunity::Add { id, name, district } } => admin::add_community(s, &id, &name, &district).await,
        Command::Grid { cmd: AddGrid::Add { id, name, community } } => admin::add_grid(s, &id, &name, &community).await,
        Command::Building { cmd: AddBuilding::Add { grid, name } } => admin::add_building(s, &grid, &name).await,
        Command::User { cmd: AddOnly::Add { id, name } } => admin::add_user(s, &id, &name).await,
        Command::Grant { user, grid, community, role, buildings } => {
            let target = match (grid, community) {
                (Some(g), _) => GrantTarget::Grid(g),
                (None, Some(c)) => GrantTarget::Community(c),
                (None, None) => return Err("give --grid or --community".into()),
            };
            admin::grant(s, &user, target, &role, &buildings).await
        }
        Command::RevokeGrant { user, grid } => admin::revoke_grant(s, &user, &grid).await,
        Command::EnrollCode { user } => admin::enroll_code(s, &secret, &user).await.map(|code| {
            format!("{code}\n(one-time enrollment code for {user}, valid 24 hours: type it into the app)")
        }),
        Command::Devices { user } => admin::devices(s, user.as_deref()).await,
        Command::RevokeDevice { device } => admin::revoke_device(s, &device).await,
        Command::RevokeUser { user } => admin::revoke_user(s, &user).await,
        Command::List { what } => {
            let l = match what {
                What::Users => Listing::Users,
                What::Grids => Listing::Grids,
                What::Grants => Listing::Grants,
            };
            admin::list(s, l).await
        }
        Command::RebuildProjection => admin::rebuild_projection(s).await,
        Command::Check => {
            let (out, clean) = admin::check(s).await.map_err(|e| e.to_string())?;
            if clean {
                Ok(out)
            } else {
                return Err(out.trim_end().to_string());
            }
        }
    };
    r.map_err(|e| e.to_string())
}

/// A new password: from the terminal without echo, asked twice, or the first line of
/// standard input when it is not a terminal (scripts).
fn read_password(user: &str) -> Result<String, String> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("console password for {user}: "))
            .map_err(|e| format!("cannot read the password: {e}"))?;
        let again = rpassword::prompt_password("again: ")
            .map_err(|e| format!("cannot read the password: {e}"))?;
        if first != again {
            return Err("the two passwords differ; nothing was changed".into());
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }
}
