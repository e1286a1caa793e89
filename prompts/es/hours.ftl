# Fuera de horario: cuándo volvemos a abrir, el portal y qué puede hacer ahora quien llama.

hours-closed = Ahora nuestros operadores no están disponibles.
hours-next-opening =
    { $day ->
        [today] Volvemos a abrir hoy a las { $hour }{ $minute ->
            [0] {""}
            [30] { " y media" }
           *[other] { " y " }{ $minute }
        }.
        [tomorrow] Volvemos a abrir mañana a las { $hour }{ $minute ->
            [0] {""}
            [30] { " y media" }
           *[other] { " y " }{ $minute }
        }.
       *[other] Volvemos a abrir el { $weekday ->
            [1] lunes
            [2] martes
            [3] miércoles
            [4] jueves
            [5] viernes
            [6] sábado
           *[7] domingo
        } a las { $hour }{ $minute ->
            [0] {""}
            [30] { " y media" }
           *[other] { " y " }{ $minute }
        }.
    }
hours-portal = Encontrará mucha información en integrazionemigranti punto gov punto it.
hours-options = Para que le llamemos, pulse 1. Para escuchar los servicios cerca de usted, disponibles a cualquier hora, pulse 2.
