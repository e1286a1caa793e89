# Hors horaires : prochaine ouverture, le portail, et ce que l'appelant peut faire maintenant.

hours-closed = Nos conseillers ne sont pas disponibles en ce moment.
hours-next-opening =
    { $day ->
        [today] Nous rouvrons aujourd'hui à { $hour } { $hour ->
            [one] heure
           *[other] heures
        }{ $minute ->
            [0] {""}
           *[other] { " " }{ $minute }
        }.
        [tomorrow] Nous rouvrons demain à { $hour } { $hour ->
            [one] heure
           *[other] heures
        }{ $minute ->
            [0] {""}
           *[other] { " " }{ $minute }
        }.
       *[other] Nous rouvrons { $weekday ->
            [1] lundi
            [2] mardi
            [3] mercredi
            [4] jeudi
            [5] vendredi
            [6] samedi
           *[7] dimanche
        } à { $hour } { $hour ->
            [one] heure
           *[other] heures
        }{ $minute ->
            [0] {""}
           *[other] { " " }{ $minute }
        }.
    }
hours-portal = Vous trouverez beaucoup d'informations sur integrazionemigranti point gov point it.
hours-options = Pour être rappelé, appuyez sur 1. Pour entendre les services près de chez vous, disponibles à toute heure, appuyez sur 2.
